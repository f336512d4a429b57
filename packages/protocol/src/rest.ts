import { z } from 'zod';
import { channelNameSchema, participantSchema } from './common';
import { nodeIdSchema } from './nodes';
import { rtpCapabilitiesSchema } from './rtp';
import { sharePresetIdSchema } from './share-presets';

/**
 * How an operator routes the audience of a channel's screen shares: `auto` lets the handoff
 * policy move spectators to HLS as the audience grows, `webrtc` keeps them all on WebRTC, and
 * `broadcast` moves them to HLS now.
 */
export const shareRoutingSchema = z.enum(['auto', 'webrtc', 'broadcast']);

/** How an operator routes the audience of a channel's screen shares. */
export type ShareRouting = z.infer<typeof shareRoutingSchema>;

/** Body of `PUT /api/channels/:name/share-routing`. */
export const shareRoutingBodySchema = z.object({ routing: shareRoutingSchema }).strict();

/** A channel as listed by the REST API. */
export const channelSchema = z.object({
  name: channelNameSchema,
  createdAt: z.string(),
  /** Members only: listed, readable, joinable and watchable by its members and moderators. */
  private: z.boolean(),
  /** The heaviest screen-share preset the channel allows. */
  maxSharePreset: sharePresetIdSchema,
  /** How its screen shares' audience is routed: see `shareRoutingSchema`. */
  shareRouting: shareRoutingSchema,
  participants: z.array(participantSchema),
});

/** A channel as listed by the REST API. */
export type Channel = z.infer<typeof channelSchema>;

/** Response of `GET /api/channels`. */
export const channelListSchema = z.object({
  channels: z.array(channelSchema),
  /** `offset` of the next page, or null on the last one. */
  nextOffset: z.number().int().nonnegative().nullable(),
});

/** Query of the paginated lists: at most `limit` items from `offset`. */
export const pageQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/** A page of a list. */
export type PageQuery = z.output<typeof pageQuerySchema>;

/** Response of `GET /api/channels`. */
export type ChannelList = z.infer<typeof channelListSchema>;

/** Body of `POST /api/channels`: a public channel unless `private` is true. */
export const createChannelBodySchema = z
  .object({ name: channelNameSchema, private: z.boolean().default(false) })
  .strict();

/** Body of `POST /api/channels`. */
export type CreateChannelBody = z.input<typeof createChannelBodySchema>;

/** Body of `PATCH /api/channels/:name`: the settings to change. */
export const updateChannelBodySchema = z
  .object({
    /** Members only, or public again. */
    private: z.boolean().optional(),
    /** The heaviest screen-share preset the channel allows. */
    maxSharePreset: sharePresetIdSchema.optional(),
  })
  .strict()
  .refine((body) => body.private !== undefined || body.maxSharePreset !== undefined, {
    message: 'name at least one of private and maxSharePreset',
  });

/** Body of `PATCH /api/channels/:name`. */
export type UpdateChannelBody = z.infer<typeof updateChannelBodySchema>;

/** Response of `GET /api/health` and `GET /api/ready`. */
export const healthSchema = z.object({
  status: z.enum(['ok', 'unavailable']),
  checks: z.record(z.string(), z.boolean()),
});

/** Response of `GET /api/health` and `GET /api/ready`. */
export type Health = z.infer<typeof healthSchema>;

/** Response of `GET /api/voice/capabilities`: what a device loads before it joins. */
export const voiceCapabilitiesSchema = z.object({ rtpCapabilities: rtpCapabilitiesSchema });

/** Response of `GET /api/voice/capabilities`. */
export type VoiceCapabilities = z.infer<typeof voiceCapabilitiesSchema>;

/** Body of `POST /api/voice/join`: the channel, and nodes the client just lost, if any. */
export const voiceJoinBodySchema = z
  .object({
    channel: channelNameSchema,
    /** Nodes to avoid if another has room: the client's connection to them just failed. */
    avoid: z.array(nodeIdSchema).max(8).default([]),
    /** Watch the channel's screen shares without joining voice: receive only, in no roster. */
    spectate: z.boolean().default(false),
  })
  .strict();

/** Body of `POST /api/voice/join`. */
export type VoiceJoinBody = z.input<typeof voiceJoinBodySchema>;

/**
 * A TURN or STUN server for the client's transports, as an `RTCIceServer`: its URLs and, for
 * TURN, time-limited credentials.
 */
export const iceServerSchema = z.object({
  /** `turn:`, `turns:` or `stun:` URLs of one server. */
  urls: z
    .array(
      z
        .string()
        .max(256)
        .regex(/^(turns?|stun):/),
    )
    .min(1)
    .max(8),
  /** TURN username; for coturn's REST credentials `<expiry in Unix seconds>:<user>`. */
  username: z.string().max(512).optional(),
  /** TURN password that goes with `username`. */
  credential: z.string().max(512).optional(),
});

/** A TURN or STUN server for the client's transports. */
export type IceServer = z.infer<typeof iceServerSchema>;

/** Where to connect for a channel: the placed node's signaling URL and a join token for it. */
export const voiceJoinSchema = z.object({
  /** The node serving this client. */
  nodeId: nodeIdSchema,
  /** Signaling WebSocket URL, absolute or relative to the api's origin. */
  url: z.string().min(1),
  /** Join token to pass as the `token` query parameter; valid for `expiresIn` seconds. */
  token: z.string().min(1),
  /** Seconds the token stays valid. */
  expiresIn: z.number().int().positive(),
  /** TURN servers with credentials for this client's transports; empty without TURN. */
  iceServers: z.array(iceServerSchema).max(8).default([]),
});

/** Where to connect for a channel. */
export type VoiceJoin = z.infer<typeof voiceJoinSchema>;
