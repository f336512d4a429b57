import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { channelSchema, nodeListSchema, voiceJoinSchema } from '@hearth/protocol';
import { PostgresClient } from '../src/db/postgres-client';
import {
  connectDoomedNode,
  killProcess,
  spawnTsx,
  startApiProcess,
  stopProcess,
} from './support/api-processes';
import { TEST_ADMIN_TOKEN, ensureChannel, guestSession, operator } from './support/accounts';
import { TestPostgres } from './support/postgres';
import { TestSignalingClient } from './support/server';

// An api process with its embedded voice node, and a voice-sfu process, on one PostgreSQL. The
// api is killed with SIGKILL and started again on the same port, as a supervisor would.
const CLUSTER_SECRET = 'crash-recovery-cluster-secret-0123456789abcdef';
// The operator token: the test's helpers create channels and read rosters with it.
const ADMIN_TOKEN = TEST_ADMIN_TOKEN;
const NODE_TIMEOUT_MS = 1000;
const EMBEDDED_NODE = `embedded-${os.hostname()}`;

let postgres: TestPostgres;
let db: PostgresClient | undefined;
const processes: ChildProcess[] = [];
const sockets: WebSocket[] = [];
const clients: TestSignalingClient[] = [];

beforeAll(async () => {
  postgres = await TestPostgres.start({ crashSafe: true });
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const child of processes.splice(0)) await stopProcess(child);
  await db?.close();
  db = undefined;
});

afterAll(async () => {
  await postgres?.stop();
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function startProcess(script: string, env: Record<string, string>): ChildProcess {
  const child = spawnTsx(script, env);
  processes.push(child);
  return child;
}

/** Starts the api process on `port` and resolves once it listens. */
async function startApi(databaseUrl: string, port: number): Promise<ChildProcess> {
  const child = await startApiProcess({
    databaseUrl,
    port,
    clusterSecret: CLUSTER_SECRET,
    adminToken: ADMIN_TOKEN,
    nodeTimeoutMs: NODE_TIMEOUT_MS,
  });
  processes.push(child);
  return child;
}

async function upNodes(baseUrl: string): Promise<string[]> {
  const response = await fetch(`${baseUrl}/api/nodes`, { headers: operator() });
  return nodeListSchema
    .parse(await response.json())
    .nodes.filter((node) => node.status === 'up')
    .map((node) => node.id)
    .sort();
}

/**
 * Places a guest in `channel` (created first) away from the nodes in `avoid`, and joins over
 * signaling.
 */
async function join(
  baseUrl: string,
  name: string,
  channel: string,
  avoid: string[],
): Promise<string> {
  await ensureChannel(baseUrl, channel);
  const response = await fetch(`${baseUrl}/api/voice/join`, {
    method: 'POST',
    headers: { ...(await guestSession(baseUrl, name)), 'content-type': 'application/json' },
    body: JSON.stringify({ channel, avoid }),
  });
  const placement = voiceJoinSchema.parse(await response.json());
  const url = new URL(placement.url, baseUrl.replace('http', 'ws'));
  url.searchParams.set('token', placement.token);
  const client = await TestSignalingClient.open(url.href);
  clients.push(client);
  const caps = (await client.request('getRouterRtpCapabilities')) as {
    data: { rtpCapabilities: unknown };
  };
  expect(
    await client.request('join', { channel, rtpCapabilities: caps.data.rtpCapabilities }),
  ).toMatchObject({ ok: true });
  return placement.nodeId;
}

async function participants(baseUrl: string, channel: string): Promise<string[]> {
  const response = await fetch(`${baseUrl}/api/channels/${channel}`, { headers: operator() });
  if (response.status !== 200) return [`(${response.status})`];
  return channelSchema
    .parse(await response.json())
    .participants.map((participant) => participant.displayName)
    .sort();
}

describe('crash recovery of voice sessions', () => {
  it('after a SIGKILL of the api, the restarted api closes the dead nodes’ rows and the voice node that reconnects replays its sessions', async () => {
    const databaseUrl = await postgres.createDatabase();
    db = new PostgresClient(databaseUrl, () => undefined);
    const apiPort = await freePort();
    const baseUrl = `http://127.0.0.1:${apiPort}`;
    const first = await startApi(databaseUrl, apiPort);
    startProcess('voice-sfu/src/main.ts', {
      VOICE_NODE_ID: 'node-x',
      VOICE_PORT: String(await freePort()),
      VOICE_API_URL: baseUrl,
      VOICE_CLUSTER_SECRET: CLUSTER_SECRET,
      VOICE_HEARTBEAT_MS: '200',
      VOICE_WORKERS: '1',
      VOICE_RTC_BASE_PORT: '0',
      VOICE_LOG_LEVEL: 'warn',
    });
    await expect
      .poll(() => upNodes(baseUrl), { timeout: 20_000, interval: 200 })
      .toEqual([EMBEDDED_NODE, 'node-x'].sort());

    // Ada talks on the voice-sfu node, Cy on the api's own node; Dee's node dies with the api.
    expect(await join(baseUrl, 'Ada', 'lobby', [EMBEDDED_NODE])).toBe('node-x');
    expect(await join(baseUrl, 'Cy', 'games', ['node-x'])).toBe(EMBEDDED_NODE);
    sockets.push(await connectDoomedNode(baseUrl, CLUSTER_SECRET));
    const openRows = async () =>
      (
        await db!.query(
          `SELECT node_id, display_name FROM session_history WHERE left_at IS NULL
           ORDER BY node_id, display_name`,
        )
      ).map((row) => `${String(row.node_id)}/${String(row.display_name)}`);
    const before = [`${EMBEDDED_NODE}/Cy`, 'node-doomed/Dee', 'node-x/Ada'].sort();
    await expect.poll(openRows, { timeout: 5000 }).toEqual(before);
    const [adasRow] = await db.query(
      `SELECT id FROM session_history WHERE display_name = 'Ada' AND left_at IS NULL`,
    );

    await killProcess(first);
    // Nobody was left to close anything.
    expect(await openRows()).toEqual(before);

    const restarted = performance.now();
    await startApi(databaseUrl, apiPort);
    // node-x reconnects by itself and replays Ada; she is listed again without rejoining.
    await expect
      .poll(() => participants(baseUrl, 'lobby'), { timeout: 15_000, interval: 100 })
      .toEqual(['Ada']);
    const replayedAfterMs = performance.now() - restarted;
    // The embedded node registered empty at start; node-doomed is gone from the registry and is
    // reaped by the first sweep, which waits for live nodes to come back: 5 s, a node's longest
    // wait between two attempts to reconnect, plus two node timeouts after the start.
    await expect.poll(openRows, { timeout: 15_000, interval: 100 }).toEqual(['node-x/Ada']);
    const deadNodesOpen = await db.query(
      `SELECT count(*)::int AS open FROM session_history
       WHERE left_at IS NULL AND node_id <> 'node-x'`,
    );
    expect(deadNodesOpen).toEqual([{ open: 0 }]);
    // Ada's session went on the whole time: her row is the same one, open.
    expect(
      await db.query(
        `SELECT id FROM session_history WHERE display_name = 'Ada' AND left_at IS NULL`,
      ),
    ).toEqual([adasRow]);
    expect(await participants(baseUrl, 'games')).toEqual([]);
    expect(replayedAfterMs).toBeLessThan(15_000);
  }, 60_000);
});
