import { describe, expect, it } from 'vitest';
import {
  nodeLoadSchema,
  type ChannelAssignment,
  type NodeLimits,
  type NodeLoadInput,
} from '@hearth/protocol';
import {
  hasRoom,
  loadScore,
  placeCore,
  placeParticipant,
  removeNode,
  replaceDownNodes,
  type NodeSnapshot,
} from '../../src/nodes/placement';

function node(
  id: string,
  options: {
    load?: NodeLoadInput;
    limits?: NodeLimits;
    status?: 'up' | 'down';
    pending?: number;
    kind?: 'voice' | 'ingest';
  } = {},
): NodeSnapshot {
  return {
    registration: {
      id,
      kind: options.kind ?? 'voice',
      signalingUrl: `wss://${id}.example/ws`,
      limits: options.limits ?? {},
    },
    load: nodeLoadSchema.parse(options.load ?? {}),
    status: options.status ?? 'up',
    pending: options.pending ?? 0,
  };
}

function assignment(core: string, edges: string[] = [], version = 1): ChannelAssignment {
  return { channel: 'room', core, edges, version };
}

function placed(result: ReturnType<typeof placeParticipant>) {
  if (result.outcome !== 'placed') throw new Error(`expected a placement, got ${result.reason}`);
  return result;
}

describe('loadScore()', () => {
  it('is the cpu share when the node declares no limits', () => {
    expect(loadScore(node('a', { load: { cpu: 0.4, participants: 500 } }))).toBe(0.4);
  });

  it('is the highest of cpu and each ratio to a declared limit, pending included', () => {
    const limits = { maxParticipants: 10, maxConsumers: 100, maxChannels: 4, maxStreams: 2 };
    expect(loadScore(node('a', { load: { cpu: 0.1, participants: 2 }, pending: 3, limits }))).toBe(
      0.5,
    );
    expect(loadScore(node('a', { load: { cpu: 0.1, consumers: 70 }, limits }))).toBe(0.7);
    expect(loadScore(node('a', { load: { cpu: 0.1, channels: 3 }, limits }))).toBe(0.75);
    expect(loadScore(node('a', { load: { cpu: 0.1, streams: 2 }, limits }))).toBe(1);
  });
});

describe('hasRoom()', () => {
  it('counts pending participants against maxParticipants', () => {
    const limits = { maxParticipants: 5 };
    expect(hasRoom(node('a', { load: { participants: 4 }, limits }), true)).toBe(true);
    expect(hasRoom(node('a', { load: { participants: 4 }, pending: 1, limits }), true)).toBe(false);
  });

  it('applies maxChannels only when the node does not host the channel yet', () => {
    const full = node('a', { load: { channels: 2 }, limits: { maxChannels: 2 } });
    expect(hasRoom(full, true)).toBe(true);
    expect(hasRoom(full, false)).toBe(false);
  });

  it('refuses a node at maxConsumers', () => {
    expect(hasRoom(node('a', { load: { consumers: 9 }, limits: { maxConsumers: 9 } }), true)).toBe(
      false,
    );
  });
});

describe('placeParticipant()', () => {
  it('opens a new channel on the least loaded node as core, version 1', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: undefined,
        nodes: [node('a', { load: { cpu: 0.5 } }), node('b', { load: { cpu: 0.2 } })],
      }),
    );
    expect(result).toEqual({
      outcome: 'placed',
      nodeId: 'b',
      role: 'core',
      assignment: { channel: 'room', core: 'b', edges: [], version: 1 },
      changed: true,
    });
  });

  it('breaks equal scores by node id whatever the input order', () => {
    const nodes = [node('c'), node('a'), node('b')];
    for (const order of [nodes, [...nodes].reverse(), [nodes[1]!, nodes[2]!, nodes[0]!]]) {
      const result = placed(
        placeParticipant({ channel: 'room', assignment: undefined, nodes: order }),
      );
      expect(result.nodeId).toBe('a');
    }
  });

  it('keeps the core while its node is up, even when another node is less loaded', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a', [], 4),
        nodes: [node('a', { load: { cpu: 0.9 } }), node('b')],
      }),
    );
    expect(result.nodeId).toBe('a');
    expect(result.role).toBe('core');
    expect(result.changed).toBe(false);
    expect(result.assignment).toEqual(assignment('a', [], 4));
  });

  it('fills the core before any edge with room', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a', ['b']),
        nodes: [
          node('a', { load: { participants: 8 }, limits: { maxParticipants: 10 } }),
          node('b'),
        ],
      }),
    );
    expect(result).toMatchObject({ nodeId: 'a', role: 'core', changed: false });
  });

  it('uses the least loaded existing edge with room once the core is full', () => {
    const limits = { maxParticipants: 10 };
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a', ['b', 'c', 'd'], 3),
        nodes: [
          node('a', { load: { participants: 10 }, limits }),
          node('b', { load: { participants: 6 }, limits }),
          node('c', { load: { participants: 10 }, limits }),
          node('d', { load: { participants: 7 }, limits }),
          node('e', { limits }),
        ],
      }),
    );
    expect(result).toMatchObject({ nodeId: 'b', role: 'edge', changed: false });
    expect(result.assignment).toEqual(assignment('a', ['b', 'c', 'd'], 3));
  });

  it('opens a new edge on the least loaded node with room when core and edges are full', () => {
    const limits = { maxParticipants: 4 };
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a', ['b'], 2),
        nodes: [
          node('a', { load: { participants: 4 }, limits }),
          node('b', { load: { participants: 4 }, limits }),
          node('c', { load: { participants: 3 }, limits }),
          node('d', { load: { participants: 1 }, limits }),
        ],
      }),
    );
    expect(result).toEqual({
      outcome: 'placed',
      nodeId: 'd',
      role: 'edge',
      assignment: { channel: 'room', core: 'a', edges: ['b', 'd'], version: 3 },
      changed: true,
    });
  });

  it('counts pending participants, so a burst does not overfill one node', () => {
    const limits = { maxParticipants: 3 };
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a'),
        nodes: [
          node('a', { load: { participants: 1 }, pending: 2, limits }),
          node('b', { limits }),
        ],
      }),
    );
    expect(result).toMatchObject({ nodeId: 'b', role: 'edge', changed: true });
  });

  it('treats a node at maxConsumers as full', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a'),
        nodes: [node('a', { load: { consumers: 50 }, limits: { maxConsumers: 50 } }), node('b')],
      }),
    );
    expect(result.nodeId).toBe('b');
  });

  it('opens no new channel on a node at maxChannels, but fills a core already there', () => {
    const limits = { maxChannels: 1 };
    const nodes = [node('a', { load: { channels: 1 }, limits }), node('b', { load: { cpu: 0.5 } })];
    const fresh = placed(placeParticipant({ channel: 'room', assignment: undefined, nodes }));
    expect(fresh.nodeId).toBe('b');
    const existing = placed(
      placeParticipant({ channel: 'room', assignment: assignment('a'), nodes }),
    );
    expect(existing).toMatchObject({ nodeId: 'a', role: 'core' });
  });

  it('places on another node than the ones to avoid when one has room', () => {
    const nodes = [node('a'), node('b', { load: { cpu: 0.5 } }), node('c', { load: { cpu: 0.3 } })];
    const fresh = placed(
      placeParticipant({ channel: 'room', assignment: undefined, nodes, avoid: ['a'] }),
    );
    expect(fresh.nodeId).toBe('c');
    const joined = placed(
      placeParticipant({ channel: 'room', assignment: assignment('a'), nodes, avoid: ['a'] }),
    );
    expect(joined).toMatchObject({ nodeId: 'c', role: 'edge' });
    // The core stays where the channel's producers are; only the participant goes elsewhere.
    expect(joined.assignment).toEqual(assignment('a', ['c'], 2));
  });

  it('falls back to an avoided node when no other node has room', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a'),
        nodes: [
          node('a'),
          node('b', { load: { participants: 2 }, limits: { maxParticipants: 2 } }),
        ],
        avoid: ['a'],
      }),
    );
    expect(result).toMatchObject({ nodeId: 'a', role: 'core', changed: false });
  });

  it('replaces a down core with the least loaded healthy edge, bumping the version once', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a', ['b', 'c'], 5),
        nodes: [
          node('a', { status: 'down' }),
          node('b', { load: { cpu: 0.6 } }),
          node('c', { load: { cpu: 0.4 } }),
          node('d'),
        ],
      }),
    );
    expect(result).toEqual({
      outcome: 'placed',
      nodeId: 'c',
      role: 'core',
      assignment: { channel: 'room', core: 'c', edges: ['b'], version: 6 },
      changed: true,
    });
  });

  it('replaces a core missing from the node list with the least loaded node', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: assignment('gone', [], 2),
        nodes: [node('a', { load: { cpu: 0.3 } }), node('b', { load: { cpu: 0.1 } })],
      }),
    );
    expect(result).toMatchObject({ nodeId: 'b', role: 'core' });
    expect(result.assignment).toEqual(assignment('b', [], 3));
  });

  it('ignores down and ingest nodes', () => {
    const result = placed(
      placeParticipant({
        channel: 'room',
        assignment: undefined,
        nodes: [
          node('a', { status: 'down' }),
          node('b', { kind: 'ingest' }),
          node('c', { load: { cpu: 0.9 } }),
        ],
      }),
    );
    expect(result.nodeId).toBe('c');
  });

  it('answers no_capacity when no voice node is up', () => {
    expect(placeParticipant({ channel: 'room', assignment: undefined, nodes: [] })).toEqual({
      outcome: 'no_capacity',
      reason: 'no voice node is up for channel room',
    });
    expect(
      placeParticipant({
        channel: 'room',
        assignment: assignment('a'),
        nodes: [node('a', { status: 'down' }), node('b', { kind: 'ingest' })],
      }).outcome,
    ).toBe('no_capacity');
  });

  it('answers no_capacity when every up node is full, avoided or not', () => {
    const limits = { maxParticipants: 1 };
    const nodes = [
      node('a', { load: { participants: 1 }, limits }),
      node('b', { pending: 1, limits }),
    ];
    expect(
      placeParticipant({ channel: 'room', assignment: assignment('a', ['b']), nodes }),
    ).toEqual({
      outcome: 'no_capacity',
      reason: 'every voice node is full for channel room',
    });
    expect(
      placeParticipant({ channel: 'room', assignment: undefined, nodes, avoid: ['a'] }).outcome,
    ).toBe('no_capacity');
  });
});

describe('replaceDownNodes()', () => {
  it('returns the same assignment when all its nodes are up', () => {
    const current = assignment('a', ['b'], 7);
    expect(replaceDownNodes(current, [node('a'), node('b')])).toBe(current);
  });

  it('drops down edges and keeps an up core', () => {
    expect(
      replaceDownNodes(assignment('a', ['b', 'c'], 7), [
        node('a'),
        node('b', { status: 'down' }),
        node('c'),
      ]),
    ).toEqual(assignment('a', ['c'], 8));
  });

  it('prefers a healthy edge as the new core, even a full one', () => {
    const limits = { maxParticipants: 1 };
    expect(
      replaceDownNodes(assignment('a', ['b']), [
        node('a', { status: 'down' }),
        node('b', { load: { participants: 1, cpu: 0.9 }, limits }),
        node('c'),
      ]),
    ).toEqual(assignment('b', [], 2));
  });

  it('without a healthy edge, picks the least loaded node with room for a new channel', () => {
    expect(
      replaceDownNodes(assignment('a', ['b']), [
        node('a', { status: 'down' }),
        node('b', { status: 'down' }),
        node('c', { load: { channels: 1 }, limits: { maxChannels: 1 } }),
        node('d', { load: { cpu: 0.5 } }),
      ]),
    ).toEqual(assignment('d', [], 2));
  });

  it('falls back to the least loaded up node when every node is full', () => {
    const limits = { maxChannels: 1 };
    expect(
      replaceDownNodes(assignment('a'), [
        node('a', { status: 'down' }),
        node('b', { load: { channels: 2 }, limits }),
        node('c', { load: { channels: 1 }, limits }),
      ]),
    ).toEqual(assignment('c', [], 2));
  });

  it('returns undefined when no voice node is up', () => {
    expect(
      replaceDownNodes(assignment('a', ['b']), [
        node('a', { status: 'down' }),
        node('b', { status: 'down' }),
        node('c', { kind: 'ingest' }),
      ]),
    ).toBeUndefined();
  });
});

describe('placeCore()', () => {
  it('opens a new channel on the least loaded node with room', () => {
    expect(
      placeCore({
        channel: 'room',
        assignment: undefined,
        nodes: [
          node('a', { load: { channels: 2 }, limits: { maxChannels: 2 } }),
          node('b', { load: { cpu: 0.7 } }),
        ],
      }),
    ).toEqual({ outcome: 'placed', assignment: assignment('b'), changed: true });
  });

  it('keeps an assignment whose nodes are up, and repairs one whose core is down', () => {
    const current = assignment('a', ['b'], 3);
    expect(
      placeCore({ channel: 'room', assignment: current, nodes: [node('a'), node('b')] }),
    ).toEqual({ outcome: 'placed', assignment: current, changed: false });
    expect(
      placeCore({
        channel: 'room',
        assignment: current,
        nodes: [node('a', { status: 'down' }), node('b')],
      }),
    ).toEqual({ outcome: 'placed', assignment: assignment('b', [], 4), changed: true });
  });

  it('answers no_capacity when no node has room or none is up', () => {
    expect(
      placeCore({
        channel: 'room',
        assignment: undefined,
        nodes: [node('a', { load: { channels: 1 }, limits: { maxChannels: 1 } })],
      }),
    ).toEqual({ outcome: 'no_capacity', reason: 'every voice node is full for channel room' });
    expect(placeCore({ channel: 'room', assignment: undefined, nodes: [] })).toEqual({
      outcome: 'no_capacity',
      reason: 'no voice node is up for channel room',
    });
    expect(
      placeCore({
        channel: 'room',
        assignment: assignment('a'),
        nodes: [node('a', { status: 'down' })],
      }).outcome,
    ).toBe('no_capacity');
  });
});

describe('removeNode()', () => {
  it('returns the same assignment when the node is not in it', () => {
    const current = assignment('a', ['b']);
    expect(removeNode(current, 'c', [node('a'), node('b'), node('c')])).toBe(current);
  });

  it('drops a leaving edge and bumps the version', () => {
    expect(
      removeNode(assignment('a', ['b', 'c'], 4), 'b', [node('a'), node('b'), node('c')]),
    ).toEqual(assignment('a', ['c'], 5));
  });

  it('hands a leaving core to the least loaded up edge', () => {
    expect(
      removeNode(assignment('a', ['b', 'c', 'd']), 'a', [
        node('a'),
        node('b', { load: { cpu: 0.1 }, status: 'down' }),
        node('c', { load: { cpu: 0.6 } }),
        node('d', { load: { cpu: 0.3 } }),
      ]),
    ).toEqual(assignment('d', ['b', 'c'], 2));
  });

  it('returns undefined when the leaving node was the only one', () => {
    expect(removeNode(assignment('a'), 'a', [node('a')])).toBeUndefined();
  });
});
