import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { IngestNodeProcess } from './support/ingest-node';
import { exited, publishLikeObs } from './support/obs';
import { storagePlaylistEnded } from './support/ll-hls';
import { eventually } from './support/wait';

const CLUSTER_SECRET = 'e2e-ll-cluster-secret-0123456789abcdef0123456789abcdef';
const EDGE_SECRET = 'e2eEdgeSecret0123456789abcdefghijklmnop';
const CHANNEL = 'routed';

let s3: TestS3Server;
let edge: NginxProcess;
let api: TestApi;
let workDir: string;
const nodes: IngestNodeProcess[] = [];

// Two ingest node processes, the api on a port chosen first (the edge asks it which node is a
// channel's origin), and the edge in front of S3 and of whichever node that is.
beforeAll(async () => {
  s3 = await TestS3Server.start();
  const apiPort = await freePort();
  edge = await startNginxEdge({
    originUrl: s3.endpoint,
    bucket: TEST_BUCKET,
    liveOriginResolver: { apiUrl: `http://127.0.0.1:${apiPort}`, edgeSecret: EDGE_SECRET },
    liveOriginSecret: EDGE_SECRET,
  });
  api = await startTestApi({
    port: apiPort,
    api: { clusterSecret: CLUSTER_SECRET, edgeSecret: EDGE_SECRET },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
  });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-ll-cluster-'));
  await IngestNodeProcess.startTwo(nodes, {
    apiUrl: api.baseUrl,
    clusterSecret: CLUSTER_SECRET,
    workDir,
    env: { ...s3.ingestEnv(), INGEST_EDGE_SECRET: EDGE_SECRET },
  });
}, 60_000);

afterAll(async () => {
  for (const node of nodes) node.kill('SIGKILL');
  await Promise.all(nodes.map((node) => node.exited()));
  await api?.close();
  await edge?.stop();
  await s3?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

// Requests a node's origin answered for live streams, from its metrics.
async function originRequests(node: IngestNodeProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
  return [...text.matchAll(/^ingest_origin_requests_total\{[^}]*\} (\d+)$/gm)].reduce(
    (sum, match) => sum + Number(match[1]),
    0,
  );
}

function askApi(secret: string | undefined): Promise<Response> {
  return fetch(`${api.baseUrl}/api/edge/live-origin/${CHANNEL}`, {
    headers: secret === undefined ? {} : { 'X-Hearth-Edge-Secret': secret },
  });
}

describe('LL-HLS with two ingest nodes', () => {
  it('the edge asks the api which node holds the channel and reads its LL playlists there; without a live stream it reads S3', async () => {
    const [nodeA, nodeB] = nodes as [IngestNodeProcess, IngestNodeProcess];
    expect((await askApi(EDGE_SECRET)).status).toBe(403);
    const issued = await api.streams.createKey(CHANNEL);
    // The publisher reaches node b (a balancer would pick one; any node accepts any key).
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${nodeB.rtmpPort}/live/${issued.streamKey}`,
      seconds: 14,
      width: 640,
      height: 360,
    });
    const media = `${edge.url}/live/${CHANNEL}/360p30/index.m3u8`;
    await eventually(
      async () => {
        const response = await fetch(media);
        return response.ok && (await response.text()).includes('#EXT-X-PART:');
      },
      20_000,
      'an LL playlist of node b on the edge',
    );
    // The api names node b, and only to the edge.
    const named = await askApi(EDGE_SECRET);
    expect(named.status).toBe(204);
    expect(named.headers.get('x-hearth-live-origin')).toBe(`127.0.0.1:${nodeB.httpPort}`);
    expect((await askApi('not-the-secret-not-the-secret-not-the-secret')).status).toBe(403);
    expect((await askApi(undefined)).status).toBe(403);
    const part = /#EXT-X-PART:[^\n]*URI="([^"]+)"/.exec(await (await fetch(media)).text())![1]!;
    expect((await fetch(`${edge.url}/live/${CHANNEL}/360p30/${part}`)).status).toBe(200);
    expect(await originRequests(nodeB)).toBeGreaterThan(0);
    expect(await originRequests(nodeA)).toBe(0);
    // The node answers the edge, which sends the secret, and nobody else.
    const direct = `http://127.0.0.1:${nodeB.httpPort}/live/${CHANNEL}/360p30/index.m3u8`;
    expect((await fetch(direct)).status).toBe(403);

    expect(await exited(publisher)).toBe(0);
    await storagePlaylistEnded(media, 30_000);
  }, 90_000);
});
