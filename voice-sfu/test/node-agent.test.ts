import { afterEach, describe, expect, it } from 'vitest';
import {
  REPLAY_BATCH_SIZE,
  nodeToApiMessageSchema,
  type NodeToApiMessage,
  type ReplayedSession,
} from '@hearth/protocol';
import { JoinTokenVerifier } from '@hearth/server-common';
import { voiceConfig } from '../src/config';
import { NodeAgent } from '../src/node-agent';
import { VoiceNode } from '../src/voice-node';
import { RecordingSink, quietLogger, testIdentity } from './support/plain-peers';

let node: VoiceNode | undefined;
let agent: NodeAgent | undefined;

afterEach(() => {
  agent?.close();
  agent = undefined;
  node?.close();
  node = undefined;
});

async function start(): Promise<{ node: VoiceNode; agent: NodeAgent }> {
  node = await VoiceNode.start(voiceConfig({ numWorkers: 1, rtcBasePort: 0 }), quietLogger);
  // The agent exists before any channel opens, as in a node process, so it hears every join.
  agent = new NodeAgent({
    node,
    nodeId: 'node-t',
    tokens: new JoinTokenVerifier(),
    limits: {},
    // Heartbeats are beside the point here; the first one goes out at attach, no second one.
    heartbeatMs: 3_600_000,
  });
  return { node, agent };
}

/** Attaches a recording connection; every message is checked against the wire schema. */
function attach(on: NodeAgent): NodeToApiMessage[] {
  const sent: NodeToApiMessage[] = [];
  on.attach((message) => sent.push(nodeToApiMessageSchema.parse(message)));
  return sent;
}

function replayed(sent: NodeToApiMessage[]): { batches: number; sessions: ReplayedSession[] } {
  const replays = sent.flatMap((message) => (message.type === 'replay' ? [message] : []));
  expect(replays.at(-1)?.done).toBe(true);
  expect(replays.slice(0, -1).every((message) => !message.done)).toBe(true);
  return { batches: replays.length, sessions: replays.flatMap((message) => message.sessions) };
}

const byName = (a: ReplayedSession, b: ReplayedSession) =>
  a.participant.displayName.localeCompare(b.participant.displayName);

describe('NodeAgent replay', () => {
  it('attach() registers, then replays every local session with its state', async () => {
    const { node, agent } = await start();
    const join = (channel: string, name: string) =>
      node.channels.join(
        channel,
        testIdentity(name),
        node.routerRtpCapabilities,
        new RecordingSink(),
      );
    const ada = await join('lobby', 'Ada');
    const bo = await join('lobby', 'Bo');
    const cy = await join('games', 'Cy');
    await bo.channel.setDeafened(bo.peer.id, true);

    const sent = attach(agent);
    expect(sent.map((message) => message.type).slice(0, 2)).toEqual(['register', 'replay']);
    expect(replayed(sent).sessions.sort(byName)).toEqual([
      {
        peerId: ada.peer.id,
        channel: 'lobby',
        userId: 'test:Ada',
        participant: {
          id: ada.peer.id,
          displayName: 'Ada',
          muted: false,
          deafened: false,
          serverMuted: false,
        },
      },
      {
        peerId: bo.peer.id,
        channel: 'lobby',
        userId: 'test:Bo',
        participant: {
          id: bo.peer.id,
          displayName: 'Bo',
          muted: false,
          deafened: true,
          serverMuted: false,
        },
      },
      {
        peerId: cy.peer.id,
        channel: 'games',
        userId: 'test:Cy',
        participant: {
          id: cy.peer.id,
          displayName: 'Cy',
          muted: false,
          deafened: false,
          serverMuted: false,
        },
      },
    ]);

    // A peer leaves; told to register again, the node replays who is left.
    ada.channel.leave(ada.peer.id);
    sent.length = 0;
    agent.receive({ type: 'registerAgain' });
    expect(sent.map((message) => message.type).slice(0, 2)).toEqual(['register', 'replay']);
    expect(
      replayed(sent)
        .sessions.map((session) => session.participant.displayName)
        .sort(),
    ).toEqual(['Bo', 'Cy']);
    expect(agent.liveSessions()).toHaveLength(2);
  });

  it('a node with nobody on it replays one empty batch; a large one replays in batches', async () => {
    const { node, agent } = await start();
    expect(replayed(attach(agent))).toEqual({ batches: 1, sessions: [] });

    const count = REPLAY_BATCH_SIZE + 1;
    for (let index = 0; index < count; index++) {
      await node.channels.join(
        `room-${index % 3}`,
        testIdentity(`peer-${index}`),
        node.routerRtpCapabilities,
        new RecordingSink(),
      );
    }
    const { batches, sessions } = replayed(attach(agent));
    expect(batches).toBe(2);
    expect(new Set(sessions.map((session) => session.peerId)).size).toBe(count);
  });
});
