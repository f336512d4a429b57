import { z } from 'zod';
import { channelNameSchema, grantSchema } from './common';
import { sharePresetIdSchema } from './share-presets';

/** What a voice join token lets its holder do: join one channel on one node, with its grants. */
export const joinTokenClaimsSchema = z.object({
  /** User id (or generated guest id). */
  sub: z.string().min(1).max(128),
  /** Display name shown to other participants. */
  name: z.string().min(1).max(64),
  /** True for a display-name guest. */
  guest: z.boolean(),
  /** The one channel the token admits to. */
  channel: channelNameSchema,
  /** The voice-sfu node the token is valid on. */
  node: z.string().min(1).max(128),
  /** Grants the holder has in that channel. */
  grants: z.array(grantSchema),
  /** The node holding the channel's core when the token was issued. */
  core: z.string().min(1).max(128),
  /** Token id: a node admits each token once. */
  jti: z.uuid(),
  /** Standing in the channel (see `RANKS`): a moderator acts only on lower ranks. */
  rank: z.number().int().min(0).max(5),
  /** A moderator muted this account in the channel, and the mute outlives its sessions. */
  serverMuted: z.boolean(),
  /** A spectator: receives the channel's screen shares only, and is in no roster. */
  spectator: z.boolean().default(false),
  /** The heaviest screen-share preset the channel allows. */
  maxSharePreset: sharePresetIdSchema.default('source'),
});

/** Claims of a voice join token. */
export type JoinTokenClaims = z.infer<typeof joinTokenClaimsSchema>;

/** Claims a voice join token is signed with; those with defaults may be left out. */
export type JoinTokenClaimsInput = z.input<typeof joinTokenClaimsSchema>;

/** The id a node registers under: 1-128 letters, digits, "_", "." or "-". */
export const nodeIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'must be 1-128 letters, digits, "_", "." or "-"');

/** What a node does: `voice` runs mediasoup routers, `ingest` takes RTMP and transcodes. */
export const nodeKindSchema = z.enum(['voice', 'ingest']);

/** What a node does. */
export type NodeKind = z.infer<typeof nodeKindSchema>;

const count = z.number().int().nonnegative().default(0);

/** The load a node reports in each heartbeat; counts a node does not have default to 0. */
export const nodeLoadSchema = z.object({
  /** Mean busy share of the node's workers, 0..1. */
  cpu: z.number().min(0).max(1).default(0),
  /** mediasoup consumers on the node. */
  consumers: count,
  /** mediasoup producers on the node. */
  producers: count,
  /** mediasoup routers on the node (core and edge). */
  routers: count,
  /** Participants connected to the node. */
  participants: count,
  /** Channels with a router on the node. */
  channels: count,
  /** Media bitrate through the node, in kbit/s. */
  bitrateKbps: z.number().nonnegative().default(0),
  /** Live streams being ingested (ingest nodes). */
  streams: count,
  /** Slowest transcode speed among the node's streams, 1 = real time; 0 without streams. */
  transcodeSpeed: z.number().nonnegative().default(0),
  /** Bytes of segments and playlists waiting for upload (ingest nodes). */
  uploadBacklogBytes: count,
});

/** The load a node reports in each heartbeat. */
export type NodeLoad = z.output<typeof nodeLoadSchema>;

/** A load report as a node may send it, with counts it does not have left out. */
export type NodeLoadInput = z.input<typeof nodeLoadSchema>;

const positiveInt = z.number().int().positive();

/** Capacity limits a node declares; placement treats a node at any of them as full. */
export const nodeLimitsSchema = z.object({
  /** Participants the node accepts. */
  maxParticipants: positiveInt.optional(),
  /** Consumers the node carries. */
  maxConsumers: positiveInt.optional(),
  /** Channels the node hosts a router for. */
  maxChannels: positiveInt.optional(),
  /** Streams an ingest node transcodes at once. */
  maxStreams: positiveInt.optional(),
});

/** Capacity limits a node declares. */
export type NodeLimits = z.infer<typeof nodeLimitsSchema>;

/** What a node sends when it registers with the api. */
export const nodeRegistrationSchema = z.object({
  /** Stable id of the node, unique in the cluster. */
  id: nodeIdSchema,
  /** What the node does. */
  kind: nodeKindSchema,
  /** ws/wss URL clients open for signaling (voice nodes). */
  signalingUrl: z.url({ protocol: /^wss?$/, error: 'must be a ws:// or wss:// URL' }).optional(),
  /** rtmp/rtmps URL streamers push to (ingest nodes). */
  rtmpUrl: z.url({ protocol: /^rtmps?$/, error: 'must be an rtmp:// or rtmps:// URL' }).optional(),
  /** Where the CDN edge reaches the node's LL-HLS origin, `http://host:port` (ingest nodes). */
  originUrl: z
    .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
    .optional(),
  /** Capacity limits; none means unlimited. */
  limits: nodeLimitsSchema.default({}),
});

/** What a node sends when it registers with the api. */
export type NodeRegistration = z.output<typeof nodeRegistrationSchema>;

/** A registration as a node may send it, with defaults left out. */
export type NodeRegistrationInput = z.input<typeof nodeRegistrationSchema>;

/** Whether the api hears a node's heartbeats. */
export const nodeStatusSchema = z.enum(['up', 'down']);

/** Whether the api hears a node's heartbeats. */
export type NodeStatus = z.infer<typeof nodeStatusSchema>;

/** A node as the REST API shows it: registration, last reported load and health. */
export const nodeInfoSchema = nodeRegistrationSchema.extend({
  /** Load from the last heartbeat. */
  load: nodeLoadSchema,
  /** `down` once heartbeats stop for longer than the node timeout. */
  status: nodeStatusSchema,
  /** When the last heartbeat (or the registration) arrived, ISO 8601. */
  lastHeartbeatAt: z.iso.datetime(),
  /** When the node registered, ISO 8601. */
  registeredAt: z.iso.datetime(),
});

/** A node as the REST API shows it. */
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/** Where a voice channel runs: its core node, the edge nodes piped from it, and a version. */
export const channelAssignmentSchema = z.object({
  /** The channel. */
  channel: channelNameSchema,
  /** Node holding the channel's core router (its producers). */
  core: nodeIdSchema,
  /** Nodes holding edge routers fed from the core. */
  edges: z.array(nodeIdSchema),
  /** Grows by one with every change, so concurrent writers can compare and set. */
  version: z.number().int().positive(),
});

/** Where a voice channel runs. */
export type ChannelAssignment = z.infer<typeof channelAssignmentSchema>;

/** Response of `GET /api/nodes`. */
export const nodeListSchema = z.object({ nodes: z.array(nodeInfoSchema) });

/** Response of `GET /api/nodes`. */
export type NodeList = z.infer<typeof nodeListSchema>;

/** Response of `GET /api/channels/:name/sfu`: the assignment and each of its nodes still known. */
export const channelSfuStatusSchema = z.object({
  assignment: channelAssignmentSchema,
  nodes: z.array(nodeInfoSchema),
});

/** Response of `GET /api/channels/:name/sfu`. */
export type ChannelSfuStatus = z.infer<typeof channelSfuStatusSchema>;

/** Response of `GET /api/channels/:name/node`: the node serving the channel's core. */
export const channelNodeSchema = z.object({
  channel: channelNameSchema,
  nodeId: nodeIdSchema,
  /** Where clients open signaling to that node; absent when it registered none. */
  signalingUrl: z.string().optional(),
});

/** Response of `GET /api/channels/:name/node`. */
export type ChannelNode = z.infer<typeof channelNodeSchema>;
