import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocketServer } from 'ws';
import { nodeLoadSchema, type NodeToApiMessage, type Participant } from '@hearth/protocol';
import { connectControlSocket, createLogger, type ControlSocket } from '@hearth/server-common';
import type { PgliteClient } from '../src/db/pglite-client';
import { SqlSessionHistory } from '../src/db/session-history';
import { createPlacementService, type PlacementService } from '../src/nodes/placement-service';
import { NodeHub } from '../src/voice/node-hub';
import { InMemoryPresenceStore } from '../src/voice/presence';
import { openTestDatabase } from './support/server';

// The hub's timers, the node's reconnect backoff and the clocks that stamp history rows run on
// vitest's fake clock; sockets and the database do real I/O, given a turn of the event loop at
// each step of the clock.
const CLUSTER_SECRET = 'gone-node-reaper-cluster-secret-0123456789abcdef';
const NODE_TIMEOUT_MS = 1000;
const STEP_MS = 10;
// Long enough for the node's backoff to reach its longest wait between two attempts.
const BACKOFF_SETTLED_MS = 60_000;
const ADA_PEER = 'a3d0c4e6-2f1b-4c8e-9d7a-5b6c7d8e9f01';
const logger = createLogger('gone-node-reaper-test', { level: 'silent' });

let db: PgliteClient | undefined;
let placement: PlacementService | undefined;
let hub: NodeHub | undefined;
let control: ControlSocket | undefined;
let server: http.Server | undefined;

afterEach(async () => {
  control?.close();
  await hub?.close();
  await placement?.stop();
  vi.useRealTimers();
  if (server) {
    const closing = server;
    closing.closeAllConnections();
    await new Promise((resolve) => closing.close(resolve));
  }
  await db?.close();
  [db, placement, hub, control, server] = [undefined, undefined, undefined, undefined, undefined];
});

/** Moves the fake clock on by `ms`, letting real I/O run after each step. */
async function elapse(ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += STEP_MS) {
    await vi.advanceTimersByTimeAsync(STEP_MS);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Moves the fake clock on until `done` holds, at most `ms`. */
async function elapseUntil(done: () => boolean, ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms && !done(); elapsed += STEP_MS) await elapse(STEP_MS);
  expect(done()).toBe(true);
}

const ada: Participant = {
  id: ADA_PEER,
  displayName: 'Ada',
  muted: false,
  deafened: false,
  serverMuted: false,
  guest: true,
  rank: 0,
  sharing: false,
};

/**
 * A voice node serving Ada, on the real control socket of the node processes: it registers and
 * replays her at each connection, beats while connected, and backs off as they do while the api
 * is away.
 */
function connectNode(apiUrl: string): ControlSocket {
  let heartbeats: NodeJS.Timeout | undefined;
  return connectControlSocket({
    apiUrl,
    clusterSecret: CLUSTER_SECRET,
    logger,
    agent: {
      attach(send: (message: NodeToApiMessage) => void) {
        send({ type: 'register', registration: { id: 'node-x', kind: 'voice', limits: {} } });
        send({
          type: 'replay',
          sessions: [{ peerId: ADA_PEER, channel: 'lobby', userId: 'guest:Ada', participant: ada }],
          done: true,
        });
        const load = nodeLoadSchema.parse({ participants: 1 });
        heartbeats = setInterval(() => send({ type: 'heartbeat', load }), NODE_TIMEOUT_MS / 5);
      },
      detach() {
        clearInterval(heartbeats);
      },
      receive() {},
    },
  });
}

describe('GoneNodeReaper', () => {
  it('first sweep after an api (re)start, with a live node in its longest reconnect backoff: the node’s rows stay open, a dead node’s close', async () => {
    db = await openTestDatabase();
    const history = new SqlSessionHistory(db);
    // What a killed api left open: Ada on node-x, which lives on, and Dee on a node that died.
    const joinedAt = new Date(Date.now() - 60_000);
    const adasRow = await history.open({
      userId: 'guest:Ada',
      displayName: 'Ada',
      channel: 'lobby',
      nodeId: 'node-x',
      peerId: ADA_PEER,
      joinedAt,
    });
    await history.open({
      userId: 'guest:Dee',
      displayName: 'Dee',
      channel: 'hall',
      nodeId: 'node-dead',
      peerId: crypto.randomUUID(),
      joinedAt,
    });
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });

    // Until the api is back, every attempt of the node is cut at once, as by a closed port.
    let apiUp = false;
    let refused = 0;
    const sockets = new WebSocketServer({ noServer: true });
    server = http.createServer();
    server.on('connection', (socket) => {
      if (apiUp) return;
      refused += 1;
      socket.destroy();
    });
    server.on('upgrade', (request, socket, head) =>
      sockets.handleUpgrade(request, socket, head, (ws) =>
        hub!.acceptSocket(ws, request.headers.authorization),
      ),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    control = connectNode(`http://127.0.0.1:${port}`);
    await elapse(BACKOFF_SETTLED_MS);
    const refusedBefore = refused;
    await elapseUntil(() => refused > refusedBefore, BACKOFF_SETTLED_MS);

    // The api comes back just after an attempt failed: the node waits its longest delay.
    placement = createPlacementService({
      logger,
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      sweepIntervalMs: NODE_TIMEOUT_MS / 5,
    });
    await placement.start();
    hub = await NodeHub.start({
      placement,
      bus: placement.bus,
      logger,
      clusterSecret: CLUSTER_SECRET,
      sessions: history,
      presence: new InMemoryPresenceStore(),
    });
    apiUp = true;
    // node-x is back once it is up again; node-dead never returns, so its row closing marks the
    // first sweep done.
    const backAndSwept = async () =>
      (await placement!.nodes()).some((node) => node.id === 'node-x' && node.status === 'up') &&
      (
        await db!.query(
          `SELECT 1 FROM session_history WHERE node_id = 'node-dead' AND left_at IS NULL`,
        )
      ).length === 0;
    let done = false;
    for (let elapsed = 0; elapsed < 20_000 && !done; elapsed += 100) {
      await elapse(100);
      done = await backAndSwept();
    }
    expect(done).toBe(true);
    // Time for the replay's history write, which runs in the background.
    await elapse(NODE_TIMEOUT_MS);

    // Ada's session went on the whole time: one row, the same, open.
    expect(
      await db.query(
        `SELECT id, left_at FROM session_history WHERE display_name = 'Ada' ORDER BY joined_at`,
      ),
    ).toEqual([{ id: adasRow, left_at: null }]);
  });
});
