import type { ChannelAssignment, NodeLoad, NodeRegistration, NodeStatus } from '@hearth/protocol';

/** What placement knows about one node: its registration, last load, health and recent placements. */
export interface NodeSnapshot {
  /** What the node registered with. */
  readonly registration: NodeRegistration;
  /** Load from its last heartbeat. */
  readonly load: NodeLoad;
  /** Whether its heartbeats still arrive. */
  readonly status: NodeStatus;
  /** Participants placed on it since its last heartbeat, which its load does not count yet. */
  readonly pending: number;
}

/** Where a participant goes: the core node of its channel, or an edge fed from the core. */
export type PlacementRole = 'core' | 'edge';

/** The answer of `placeParticipant`. */
export type ParticipantPlacementResult =
  | {
      readonly outcome: 'placed';
      /** Node the participant connects to. */
      readonly nodeId: string;
      /** Whether that node holds the channel's core router or an edge router. */
      readonly role: PlacementRole;
      /** The channel's assignment after this placement. */
      readonly assignment: ChannelAssignment;
      /** True when `assignment` differs from the one passed in (and must be stored). */
      readonly changed: boolean;
    }
  | {
      readonly outcome: 'no_capacity';
      /** Why no node could take the participant. */
      readonly reason: string;
    };

/** The answer of `placeCore`. */
export type CorePlacementResult =
  | {
      readonly outcome: 'placed';
      /** The channel's assignment, new or repaired. */
      readonly assignment: ChannelAssignment;
      /** True when `assignment` differs from the one passed in. */
      readonly changed: boolean;
    }
  | { readonly outcome: 'no_capacity'; readonly reason: string };

/** Input of `placeParticipant`. */
export interface ParticipantPlacementInput {
  /** The channel the participant joins. */
  readonly channel: string;
  /** The channel's current assignment, if it has one. */
  readonly assignment: ChannelAssignment | undefined;
  /** Every known node. */
  readonly nodes: readonly NodeSnapshot[];
  /** Nodes the client just lost: used only when no other node has room. */
  readonly avoid?: readonly string[];
}

/** The share of its capacity a node uses: the highest of its cpu and its ratios to each limit. */
export function loadScore(node: NodeSnapshot): number {
  const { load } = node;
  const { maxParticipants, maxConsumers, maxChannels, maxStreams } = node.registration.limits;
  const ratios = [load.cpu];
  if (maxParticipants) ratios.push((load.participants + node.pending) / maxParticipants);
  if (maxConsumers) ratios.push(load.consumers / maxConsumers);
  if (maxChannels) ratios.push(load.channels / maxChannels);
  if (maxStreams) ratios.push(load.streams / maxStreams);
  return Math.max(...ratios);
}

/**
 * Whether a node can take one more participant. A node that does not host the channel yet
 * would also open a router for it, so its channel limit counts too.
 */
export function hasRoom(node: NodeSnapshot, hostsChannel: boolean): boolean {
  const { load } = node;
  const { maxParticipants, maxConsumers, maxChannels } = node.registration.limits;
  if (maxParticipants !== undefined && load.participants + node.pending >= maxParticipants) {
    return false;
  }
  if (maxConsumers !== undefined && load.consumers >= maxConsumers) return false;
  if (!hostsChannel && maxChannels !== undefined && load.channels >= maxChannels) return false;
  return true;
}

/**
 * Places a participant of a channel on a voice node.
 *
 * The core of an existing assignment stays while its node is up. The participant goes to the
 * core while it has room (no pipe needed), then to the least loaded existing edge with room,
 * then to a new edge on the least loaded node with room. A down or missing core is replaced as
 * `replaceDownNodes` does. Nodes in `avoid` take the participant only when no other node has
 * room; they never move a core that is up.
 */
export function placeParticipant(input: ParticipantPlacementInput): ParticipantPlacementResult {
  const { channel, nodes } = input;
  const upNodes = nodes.filter(isUpVoiceNode);
  if (upNodes.length === 0) return noCapacity(`no voice node is up for channel ${channel}`);

  const current = input.assignment && replaceDownNodes(input.assignment, nodes);
  const avoid = new Set(input.avoid ?? []);
  const placement = current
    ? (joinAssignment(current, upNodes, avoid) ?? joinAssignment(current, upNodes, new Set()))
    : (openChannel(upNodes, avoid) ?? openChannel(upNodes, new Set()));
  if (!placement) return noCapacity(`every voice node is full for channel ${channel}`);

  const previous = input.assignment;
  const changed = !previous || !sameAssignment(previous, placement);
  const version = !previous ? 1 : changed ? previous.version + 1 : previous.version;
  return {
    outcome: 'placed',
    nodeId: placement.participantNode,
    role: placement.participantNode === placement.core ? 'core' : 'edge',
    assignment: { channel, core: placement.core, edges: [...placement.edges], version },
    changed,
  };
}

/**
 * Makes sure a channel has a core without placing a participant: a new channel gets the least
 * loaded node with room, and an existing assignment is repaired as `replaceDownNodes` does.
 */
export function placeCore(input: {
  readonly channel: string;
  readonly assignment: ChannelAssignment | undefined;
  readonly nodes: readonly NodeSnapshot[];
}): CorePlacementResult {
  const { channel, assignment, nodes } = input;
  const upNodes = nodes.filter(isUpVoiceNode);
  if (upNodes.length === 0) return noCapacity(`no voice node is up for channel ${channel}`);
  if (assignment) {
    const repaired = replaceDownNodes(assignment, upNodes)!;
    return { outcome: 'placed', assignment: repaired, changed: repaired !== assignment };
  }
  const core = rankNodes(upNodes).find((node) => hasRoom(node, false));
  if (!core) return noCapacity(`every voice node is full for channel ${channel}`);
  return {
    outcome: 'placed',
    assignment: { channel, core: core.registration.id, edges: [], version: 1 },
    changed: true,
  };
}

/**
 * The assignment without its down or unknown nodes: down edges are dropped, and a down core is
 * replaced by the least loaded healthy edge, else the least loaded node with room, else the least
 * loaded up node. Returns the same object when nothing changed, and undefined when no voice node
 * is up.
 */
export function replaceDownNodes(
  assignment: ChannelAssignment,
  nodes: readonly NodeSnapshot[],
): ChannelAssignment | undefined {
  const upNodes = nodes.filter(isUpVoiceNode);
  if (upNodes.length === 0) return undefined;
  const upIds = new Set(upNodes.map((node) => node.registration.id));
  const edges = assignment.edges.filter((id) => upIds.has(id));
  let core = assignment.core;
  if (!upIds.has(core)) {
    const edgeSet = new Set(edges);
    const ranked = rankNodes(upNodes);
    const replacement =
      ranked.find((node) => edgeSet.has(node.registration.id)) ??
      ranked.find((node) => hasRoom(node, false)) ??
      ranked[0]!;
    core = replacement.registration.id;
  }
  const next = { ...assignment, core, edges: edges.filter((id) => id !== core) };
  if (sameAssignment(assignment, next)) return assignment;
  return { ...next, version: assignment.version + 1 };
}

/**
 * The assignment without one node, which no longer hosts the channel. A leaving core is replaced
 * by the least loaded remaining edge (an up one if any). Returns the same object when the node is
 * not in the assignment, and undefined when no node is left in it.
 */
export function removeNode(
  assignment: ChannelAssignment,
  nodeId: string,
  nodes: readonly NodeSnapshot[],
): ChannelAssignment | undefined {
  if (assignment.core !== nodeId && !assignment.edges.includes(nodeId)) return assignment;
  const edges = assignment.edges.filter((id) => id !== nodeId);
  let core = assignment.core;
  if (core === nodeId) {
    const remaining = new Set(edges);
    const ranked = rankNodes(nodes.filter((node) => remaining.has(node.registration.id)));
    const up = ranked.find(isUpVoiceNode);
    const replacement = up?.registration.id ?? ranked[0]?.registration.id ?? edges[0];
    if (replacement === undefined) return undefined;
    core = replacement;
  }
  return {
    ...assignment,
    core,
    edges: edges.filter((id) => id !== core),
    version: assignment.version + 1,
  };
}

// A placement before versioning: the channel's nodes and where the participant goes.
interface Draft {
  readonly core: string;
  readonly edges: readonly string[];
  readonly participantNode: string;
}

function joinAssignment(
  assignment: ChannelAssignment,
  upNodes: readonly NodeSnapshot[],
  avoid: ReadonlySet<string>,
): Draft | undefined {
  const usable = (node: NodeSnapshot, hostsChannel: boolean) =>
    !avoid.has(node.registration.id) && hasRoom(node, hostsChannel);
  const byId = new Map(upNodes.map((node) => [node.registration.id, node]));
  const base = { core: assignment.core, edges: assignment.edges };

  const core = byId.get(assignment.core);
  if (core && usable(core, true)) return { ...base, participantNode: assignment.core };

  const edgeSet = new Set(assignment.edges);
  const ranked = rankNodes(upNodes);
  const edge = ranked.find((node) => edgeSet.has(node.registration.id) && usable(node, true));
  if (edge) return { ...base, participantNode: edge.registration.id };

  const fresh = ranked.find(
    (node) =>
      node.registration.id !== assignment.core &&
      !edgeSet.has(node.registration.id) &&
      usable(node, false),
  );
  if (!fresh) return undefined;
  const id = fresh.registration.id;
  return { ...base, edges: [...assignment.edges, id], participantNode: id };
}

function openChannel(
  upNodes: readonly NodeSnapshot[],
  avoid: ReadonlySet<string>,
): Draft | undefined {
  const core = rankNodes(upNodes).find(
    (node) => !avoid.has(node.registration.id) && hasRoom(node, false),
  );
  if (!core) return undefined;
  const id = core.registration.id;
  return { core: id, edges: [], participantNode: id };
}

function isUpVoiceNode(node: NodeSnapshot): boolean {
  return node.status === 'up' && node.registration.kind === 'voice';
}

// Least loaded first; equal scores go by id so that every api instance picks the same node.
function rankNodes(nodes: readonly NodeSnapshot[]): NodeSnapshot[] {
  return nodes
    .map((node) => ({ node, score: loadScore(node) }))
    .sort(
      (a, b) =>
        a.score - b.score ||
        (a.node.registration.id < b.node.registration.id
          ? -1
          : a.node.registration.id > b.node.registration.id
            ? 1
            : 0),
    )
    .map(({ node }) => node);
}

function sameAssignment(
  a: { readonly core: string; readonly edges: readonly string[] },
  b: { readonly core: string; readonly edges: readonly string[] },
): boolean {
  return (
    a.core === b.core &&
    a.edges.length === b.edges.length &&
    a.edges.every((id, index) => b.edges[index] === id)
  );
}

function noCapacity(reason: string): { outcome: 'no_capacity'; reason: string } {
  return { outcome: 'no_capacity', reason };
}
