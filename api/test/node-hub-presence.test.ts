import { afterEach, expect, it } from 'vitest';
import { nodeLoadSchema, type Participant } from '@hearth/protocol';
import { InMemoryClusterBus } from '../src/cluster/bus';
import type { LiveSession, SessionHistory } from '../src/db/session-history';
import { createPlacementService, type PlacementService } from '../src/nodes/placement-service';
import { NodeHub } from '../src/voice/node-hub';
import { InMemoryPresenceStore } from '../src/voice/presence';
import { capturingLogger, sleep } from './nodes/helpers';

const NODE_TIMEOUT_MS = 600;

/** A presence store whose whole-node writes hang until `release()`, as a Redis reconnecting. */
class StalledPresenceStore extends InMemoryPresenceStore {
  replaceCalls = 0;
  #release: (() => void) | undefined;
  #stalled = true;

  override async replaceNode(
    nodeId: string,
    participants: readonly { channel: string; participant: Participant }[],
  ): Promise<void> {
    this.replaceCalls += 1;
    if (this.#stalled) await new Promise<void>((resolve) => (this.#release = resolve));
    await super.replaceNode(nodeId, participants);
  }

  release(): void {
    this.#stalled = false;
    this.#release?.();
  }
}

// Session history is not what this test is about: it answers at once and keeps nothing.
const instantHistory: SessionHistory = {
  open: async () => crypto.randomUUID(),
  close: async () => undefined,
  replay: async (_nodeId, sessions: readonly LiveSession[]) =>
    new Map(sessions.map((session) => [session.peerId, crypto.randomUUID()])),
  closeNode: async () => 0,
  nodesWithOpenSessions: async () => [],
  openSessionOf: async () => undefined,
};

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

it('a presence store that hangs does not hold up heartbeats: the node stays up, and its replay is written once the store answers', async () => {
  const { logger } = capturingLogger();
  const placement: PlacementService = createPlacementService({
    logger,
    nodeTimeoutMs: NODE_TIMEOUT_MS,
    sweepIntervalMs: 50,
  });
  await placement.start();
  cleanup.push(() => placement.stop());
  const presence = new StalledPresenceStore();
  const hub = await NodeHub.start({
    placement,
    bus: new InMemoryClusterBus(logger),
    logger,
    clusterSecret: 'node-hub-presence-test-secret-0123456789',
    sessions: instantHistory,
    presence,
  });
  cleanup.push(() => hub.close());
  const nodeDown: string[] = [];
  placement.events.on('nodeDown', ({ nodeId }) => nodeDown.push(nodeId));

  const send = hub.attachLocal(() => undefined);
  send({
    type: 'register',
    registration: { id: 'node-a', kind: 'voice', limits: {} },
    rtpCapabilities: { codecs: [], headerExtensions: [] },
  });
  const peerId = crypto.randomUUID();
  const participant: Participant = {
    id: peerId,
    displayName: 'Ada',
    muted: false,
    deafened: false,
    serverMuted: false,
    guest: true,
    rank: 0,
    sharing: false,
  };
  send({
    type: 'replay',
    sessions: [{ peerId, channel: 'lobby', userId: 'guest:Ada', participant }],
    done: true,
  });
  // Three node timeouts of heartbeats, each a few times per timeout, while the write hangs.
  for (let beat = 0; beat < 9; beat++) {
    send({ type: 'heartbeat', load: nodeLoadSchema.parse({ participants: 1 }) });
    await sleep(NODE_TIMEOUT_MS / 3);
  }
  expect(nodeDown).toEqual([]);
  expect((await placement.node('node-a'))?.status).toBe('up');
  // One write at a time: the heartbeats did not pile writes up behind the hung one.
  expect(presence.replaceCalls).toBe(1);
  expect(await presence.list('lobby')).toEqual([]);

  presence.release();
  await expect.poll(() => presence.list('lobby')).toEqual([participant]);
});
