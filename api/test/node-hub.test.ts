import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { z } from 'zod';
import type { nodeToApiMessageSchema } from '@hearth/protocol';
import {
  apiToNodeMessageSchema,
  channelSchema,
  nodeListSchema,
  type ApiToNodeMessage,
  type Participant,
  type ReplayedSession,
  type RtpCapabilities,
} from '@hearth/protocol';
import { JoinTokenVerifier } from '@hearth/server-common';
import { TEST_ADMIN_TOKEN, ensureChannel, guestSession } from './support/accounts';
import { requestJoin, startTestApi, type TestApi } from './support/server';

// These tests speak the node side of `/ws/nodes` by hand, as a voice-sfu process would; the
// e2e cluster test runs real voice-sfu processes against it.
const CLUSTER_SECRET = 'node-hub-test-cluster-secret-0123456789abcdef';
// The operator token every test api has; requestJoin creates channels with it.
const ADMIN_TOKEN = TEST_ADMIN_TOKEN;

let api: TestApi | undefined;
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate();
  await api?.close();
  api = undefined;
});

async function start(): Promise<TestApi> {
  api = await startTestApi({
    api: {
      embeddedVoice: 'false',
      clusterSecret: CLUSTER_SECRET,
      nodeTimeoutMs: '600',
      sweepIntervalMs: '100',
    },
  });
  return api;
}

/** A hand-driven node connection recording what the api sends it. */
class FakeNode {
  readonly received: ApiToNodeMessage[] = [];
  readonly closed: Promise<number>;

  constructor(readonly socket: WebSocket) {
    socket.on('message', (raw) =>
      this.received.push(apiToNodeMessageSchema.parse(JSON.parse(String(raw)))),
    );
    this.closed = new Promise((resolve) => socket.once('close', (code) => resolve(code)));
  }

  static async connect(secret = CLUSTER_SECRET): Promise<FakeNode> {
    const socket = new WebSocket(`${api!.baseUrl.replace('http', 'ws')}/ws/nodes`, {
      headers: { authorization: `Cluster ${secret}` },
    });
    sockets.push(socket);
    const node = new FakeNode(socket);
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return node;
  }

  send(message: z.input<typeof nodeToApiMessageSchema>): void {
    this.socket.send(JSON.stringify(message));
  }

  async register(id: string, maxParticipants?: number): Promise<void> {
    this.send({
      type: 'register',
      registration: {
        id,
        kind: 'voice',
        signalingUrl: `ws://127.0.0.1:1/${id}`,
        limits: maxParticipants ? { maxParticipants } : {},
      },
      rtpCapabilities: capabilities,
    });
    await this.next((message) => message.type === 'registered');
    this.send({ type: 'heartbeat', load: { cpu: 0.1, participants: 0 } });
  }

  /** Replays the sessions the node serves, as a node does right after each register. */
  replay(sessions: ReplayedSession[]): void {
    this.send({ type: 'replay', sessions, done: true });
  }

  async next(match: (message: ApiToNodeMessage) => boolean): Promise<ApiToNodeMessage> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = this.received.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error('timed out waiting for a control message');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

// What a node reports of its routers; the api hands it to clients unchanged.
const capabilities: RtpCapabilities = {
  codecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }],
  headerExtensions: [],
};

async function nodes(): Promise<{ id: string; status: string }[]> {
  const response = await fetch(`${api!.baseUrl}/api/nodes`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return nodeListSchema.parse(await response.json()).nodes;
}

describe('node control socket', () => {
  it('refuses a node without the cluster secret with 4401', async () => {
    await start();
    const intruder = await FakeNode.connect('not-the-cluster-secret-0123456789abcdef');
    expect(await intruder.closed).toBe(4401);
  });

  it('registers nodes, places a join on one and relays cascade messages between them', async () => {
    await start();
    const [a, b] = [await FakeNode.connect(), await FakeNode.connect()];
    await a.register('node-a', 1);
    await b.register('node-b', 1);
    expect((await nodes()).map((node) => [node.id, node.status])).toEqual([
      ['node-a', 'up'],
      ['node-b', 'up'],
    ]);
    // The router capabilities the nodes reported are what clients load.
    expect(
      (await (await fetch(`${api!.baseUrl}/api/voice/capabilities`)).json()) as unknown,
    ).toEqual({ rtpCapabilities: capabilities });

    // Asking to join takes a guest session first: keep both nodes up meanwhile.
    const beat = setInterval(() => {
      for (const node of [a, b]) node.send({ type: 'heartbeat', load: {} });
    }, 100);
    const [first, second] = await (async () => {
      try {
        return [
          await requestJoin(api!.baseUrl, 'Ada', 'lobby'),
          await requestJoin(api!.baseUrl, 'Bo', 'lobby'),
        ];
      } finally {
        clearInterval(beat);
      }
    })();
    expect([first.nodeId, second.nodeId].sort()).toEqual(['node-a', 'node-b']);
    expect(first.url).toBe(`ws://127.0.0.1:1/${first.nodeId}`);
    // Each node learned the api's public join-token key when it registered, which checks the
    // tokens the api issues for it (once each), and nothing more: nodes cannot sign.
    for (const node of [a, b]) {
      const registered = await node.next((received) => received.type === 'registered');
      expect(registered).toMatchObject({ joinTokenKey: expect.stringMatching(/^[\w-]{43}$/) });
    }
    const registered = (await a.next((received) => received.type === 'registered')) as {
      joinTokenKey: string;
    };
    const verifier = new JoinTokenVerifier({ publicKey: registered.joinTokenKey });
    expect(verifier.admit(first.token)).toMatchObject({
      node: first.nodeId,
      channel: 'lobby',
      name: 'Ada',
      guest: true,
      rank: 0,
      serverMuted: false,
      jti: expect.any(String),
    });
    expect(() => verifier.admit(first.token)).toThrow('join token already used');

    const message = {
      type: 'roster' as const,
      channel: 'lobby',
      linkId: crypto.randomUUID(),
      participants: [],
    };
    a.send({ type: 'relay', to: 'node-b', message });
    expect(await b.next((received) => received.type === 'relay')).toEqual({
      type: 'relay',
      from: 'node-a',
      message,
    });
    // A malformed message is dropped: the connection stays up and the next relay still arrives.
    a.socket.send('{"type":"relay","to":"node-b","message":{"type":"nonsense"}}');
    const after = { ...message, linkId: crypto.randomUUID() };
    a.send({ type: 'relay', to: 'node-b', message: after });
    await b.next(
      (received) => received.type === 'relay' && received.message.linkId === after.linkId,
    );
    expect(a.socket.readyState).toBe(WebSocket.OPEN);
    expect(b.received.filter((received) => received.type === 'relay')).toHaveLength(2);
  });

  it("handles a node's messages in the order sent: a heartbeat right behind the register is fine", async () => {
    await start();
    const [a, b] = [await FakeNode.connect(), await FakeNode.connect()];
    await b.register('node-b');
    const linkId = crypto.randomUUID();
    // No waiting for "registered": a real node sends its first heartbeat at once.
    a.send({
      type: 'register',
      registration: { id: 'node-a', kind: 'voice', limits: {} },
      rtpCapabilities: capabilities,
    });
    a.send({ type: 'heartbeat', load: { participants: 2 } });
    for (const participants of [[], []]) {
      a.send({
        type: 'relay',
        to: 'node-b',
        message: { type: 'roster', channel: 'lobby', linkId, participants },
      });
    }
    a.send({
      type: 'relay',
      to: 'node-b',
      message: { type: 'linkClosed', channel: 'lobby', linkId, reason: 'last' },
    });
    await b.next((message) => message.type === 'relay' && message.message.type === 'linkClosed');
    expect(
      b.received.flatMap((message) => (message.type === 'relay' ? [message.message.type] : [])),
    ).toEqual(['roster', 'roster', 'linkClosed']);
    expect(a.socket.readyState).toBe(WebSocket.OPEN);
    expect((await nodes()).find((node) => node.id === 'node-a')).toMatchObject({ status: 'up' });
  });

  it('a silent node is marked down, its peers are told, and its next heartbeat makes it register again', async () => {
    await start();
    const [a, b] = [await FakeNode.connect(), await FakeNode.connect()];
    await a.register('node-a');
    await b.register('node-b');
    const beat = setInterval(() => b.send({ type: 'heartbeat', load: {} }), 100);
    try {
      await b.next((message) => message.type === 'nodeDown' && message.nodeId === 'node-a');
      expect((await nodes()).find((node) => node.id === 'node-a')?.status).toBe('down');
      a.send({ type: 'heartbeat', load: {} });
      await a.next((message) => message.type === 'registerAgain');
    } finally {
      clearInterval(beat);
    }
  });

  it('lists the participants nodes report in GET /api/channels, and forgets them as they go', async () => {
    await start();
    // The channel and the guest session come first, so the join follows the registers closely.
    await ensureChannel(api!.baseUrl, 'lobby');
    const guest = await guestSession(api!.baseUrl, 'Ada');
    const [a, b] = [await FakeNode.connect(), await FakeNode.connect()];
    await a.register('node-a');
    await b.register('node-b');
    await requestJoin(api!.baseUrl, 'Ada', 'lobby', guest);
    const [ada, bo] = [crypto.randomUUID(), crypto.randomUUID()];
    const view = (id: string, displayName: string, muted = false) => ({
      id,
      displayName,
      muted,
      deafened: false,
      serverMuted: false,
      guest: true,
      rank: 0,
      sharing: false,
    });
    a.send({ type: 'participantChanged', channel: 'lobby', participant: view(ada, 'Ada') });
    b.send({ type: 'participantChanged', channel: 'lobby', participant: view(bo, 'Bo') });
    b.send({ type: 'participantChanged', channel: 'lobby', participant: view(bo, 'Bo', true) });
    const listed = async () => {
      const response = await fetch(`${api!.baseUrl}/api/channels/lobby`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      return channelSchema
        .parse(await response.json())
        .participants.map((p) => `${p.displayName}${p.muted ? ' (muted)' : ''}`)
        .sort();
    };
    await expect.poll(listed).toEqual(['Ada', 'Bo (muted)']);
    a.send({ type: 'sessionClosed', peerId: ada });
    await expect.poll(listed).toEqual(['Bo (muted)']);
    // node-b goes silent: once it is marked down, its participants are gone from the list.
    b.socket.terminate();
    await expect.poll(listed, { timeout: 5000 }).toEqual([]);
  });

  it('records voice sessions from node reports and closes them when the node goes away', async () => {
    const { database } = await start();
    const node = await FakeNode.connect();
    await node.register('node-a');
    node.send({
      type: 'sessionOpened',
      peerId: crypto.randomUUID(),
      channel: 'lobby',
      userId: 'guest:1',
      displayName: 'Ada',
    });
    const sessions = () =>
      database.query('SELECT node_id, left_at FROM session_history WHERE channel = $1', ['lobby']);
    await expect.poll(async () => (await sessions()).length).toBe(1);
    expect((await sessions())[0]).toEqual({ node_id: 'node-a', left_at: null });
    node.socket.terminate();
    await expect.poll(async () => (await sessions())[0]?.left_at ?? null).toBeInstanceOf(Date);
  });

  it('a node marked down has its sessions closed; registering again it replays them, listed and open again', async () => {
    const { database } = await start();
    await ensureChannel(api!.baseUrl, 'lobby');
    const guest = await guestSession(api!.baseUrl, 'Ada');
    const [a, b] = [await FakeNode.connect(), await FakeNode.connect()];
    await a.register('node-a');
    a.replay([]);
    await b.register('node-b');
    // Places the channel, which the listing needs.
    await requestJoin(api!.baseUrl, 'Ada', 'lobby', guest);
    const view = (id: string, displayName: string, muted = false): Participant => ({
      id,
      displayName,
      muted,
      deafened: false,
      serverMuted: false,
      guest: true,
      rank: 0,
      sharing: false,
    });
    const [ada, bo] = [crypto.randomUUID(), crypto.randomUUID()];
    for (const [peerId, name] of [
      [ada, 'Ada'],
      [bo, 'Bo'],
    ] as const) {
      a.send({
        type: 'sessionOpened',
        peerId,
        channel: 'lobby',
        userId: `guest:${name}`,
        displayName: name,
      });
      a.send({ type: 'participantChanged', channel: 'lobby', participant: view(peerId, name) });
    }
    const listed = async () => {
      const response = await fetch(`${api!.baseUrl}/api/channels/lobby`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      return channelSchema
        .parse(await response.json())
        .participants.map((p) => `${p.displayName}${p.muted ? ' (muted)' : ''}`)
        .sort();
    };
    const rows = async () =>
      (
        await database.query(
          `SELECT display_name, left_at IS NULL AS open FROM session_history
           WHERE node_id = 'node-a' ORDER BY display_name, joined_at`,
        )
      ).map((row) => `${String(row.display_name)}:${row.open ? 'open' : 'closed'}`);
    await expect.poll(listed).toEqual(['Ada', 'Bo']);
    await expect.poll(rows).toEqual(['Ada:open', 'Bo:open']);

    // node-a stalls past the node timeout while node-b keeps beating.
    const beat = setInterval(() => b.send({ type: 'heartbeat', load: {} }), 100);
    try {
      await b.next((message) => message.type === 'nodeDown' && message.nodeId === 'node-a');
      await expect.poll(rows).toEqual(['Ada:closed', 'Bo:closed']);
      await expect.poll(listed).toEqual([]);

      // Back: told to register again, it replays who it still serves (Bo left meanwhile).
      a.received.length = 0;
      a.send({ type: 'heartbeat', load: {} });
      await a.next((message) => message.type === 'registerAgain');
      await a.register('node-a');
      a.replay([
        { peerId: ada, channel: 'lobby', userId: 'guest:Ada', participant: view(ada, 'Ada', true) },
      ]);
      await expect.poll(listed).toEqual(['Ada (muted)']);
      await expect.poll(rows).toEqual(['Ada:closed', 'Ada:open', 'Bo:closed']);
      // Ada leaves: her replayed session closes like any other.
      a.send({ type: 'sessionClosed', peerId: ada });
      await expect.poll(rows).toEqual(['Ada:closed', 'Ada:closed', 'Bo:closed']);
      await expect.poll(listed).toEqual([]);
    } finally {
      clearInterval(beat);
    }
  });
});
