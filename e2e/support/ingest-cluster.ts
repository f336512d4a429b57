import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NginxProcess, renderIngestBalancerConfig } from '@hearth/cdn-config';
import { liveStreamListSchema, nodeListSchema, type NodeInfo } from '@hearth/protocol';
import { PostgresClient } from '../../api/src/db/postgres-client';
import { TestPostgres } from '../../api/test/support/postgres';
import { operator } from '../../api/test/support/accounts';
import { startRedis, type TestRedis } from '../../api/test/support/redis';
import { startTestApi, type TestApi } from '../../api/test/support/server';
import { TestS3Server } from '../../stream-ingest/test/support/s3rver';
import { IngestNodeProcess } from './ingest-node';
import { eventually } from './wait';

// The operator token: guests never hold moderate or stream.
const operatorHeaders = operator();

/** Two api instances, two ingest node processes behind an nginx stream balancer, and S3. */
export interface IngestCluster {
  /** The api instances, on one PostgreSQL and one Redis. */
  apis: [TestApi, TestApi];
  /** One ingest node connected to each api instance. */
  nodes: [IngestNodeProcess, IngestNodeProcess];
  /** The TCP balancer publishers connect to. */
  balancer: NginxProcess;
  /** Where the nodes write segments and playlists. */
  s3: TestS3Server;
}

/**
 * Two api instances on one PostgreSQL and one Redis, an ingest node connected to each, and an
 * nginx stream balancer in front of both nodes: the set-up the README describes. Each step's
 * undoing is pushed on `cleanups`, to be run in reverse.
 */
export async function startIngestCluster(
  cleanups: (() => Promise<unknown>)[],
): Promise<IngestCluster> {
  const clusterSecret = randomBytes(32).toString('hex');
  const postgres = await TestPostgres.start();
  cleanups.push(() => postgres.stop());
  const databaseUrl = await postgres.createDatabase();
  const redis: TestRedis = await startRedis();
  cleanups.push(() => redis.stop());
  const s3 = await TestS3Server.start();
  cleanups.push(() => s3.close());
  const apis: TestApi[] = [];
  for (let index = 0; index < 2; index++) {
    const api = await startTestApi({
      api: { redisUrl: redis.url, clusterSecret, nodeTimeoutMs: '2000', sweepIntervalMs: '250' },
      database: new PostgresClient(databaseUrl, () => undefined),
    });
    cleanups.push(() => api.close());
    apis.push(api);
  }
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-cluster-'));
  cleanups.push(async () => fs.rmSync(workDir, { recursive: true, force: true }));
  const nodes: IngestNodeProcess[] = [];
  for (const [index, api] of apis.entries()) {
    const node = await IngestNodeProcess.start({
      nodeId: `ingest-${index + 1}`,
      apiUrl: api.baseUrl,
      clusterSecret,
      workDir: path.join(workDir, `node-${index + 1}`),
      env: s3.ingestEnv(),
    });
    cleanups.push(async () => {
      node.kill('SIGKILL');
      await node.exited();
    });
    nodes.push(node);
  }
  const balancer = await NginxProcess.start((layout) =>
    renderIngestBalancerConfig({
      listen: `127.0.0.1:${layout.port}`,
      nodes: nodes.map((node) => `127.0.0.1:${node.rtmpPort}`),
      pidFile: layout.pidFile,
      errorLogPath: layout.errorLogPath,
    }),
  );
  cleanups.push(() => balancer.stop());
  for (const api of apis) {
    await eventually(
      async () => (await ingestNodes(api)).filter((node) => node.status === 'up').length === 2,
      15_000,
      'both ingest nodes up',
    );
  }
  return {
    apis: apis as [TestApi, TestApi],
    nodes: nodes as [IngestNodeProcess, IngestNodeProcess],
    balancer,
    s3,
  };
}

/** The ingest nodes an api instance lists. */
export async function ingestNodes(api: TestApi): Promise<NodeInfo[]> {
  const response = await fetch(`${api.baseUrl}/api/nodes`, { headers: operatorHeaders });
  return nodeListSchema.parse(await response.json()).nodes.filter((n) => n.kind === 'ingest');
}

/** Live streams an api instance lists, as id, channel and state. */
export async function liveStreams(api: TestApi) {
  const response = await fetch(`${api.baseUrl}/api/streams`, { headers: operatorHeaders });
  return liveStreamListSchema
    .parse(await response.json())
    .streams.map(({ id, channel, state }) => ({ id, channel, state }));
}
