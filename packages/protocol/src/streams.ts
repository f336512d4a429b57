import { z } from 'zod';
import { channelNameSchema } from './common';

/** A stream key as listed: its id and dates, never the secret. */
export const streamKeyInfoSchema = z.object({
  id: z.string(),
  channel: channelNameSchema,
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
});

/** A stream key as listed. */
export type StreamKeyInfo = z.infer<typeof streamKeyInfoSchema>;

/** What reading a channel's key returns: the key without its secret, and where to use it. */
export const streamKeyDetailsSchema = z.object({
  key: streamKeyInfoSchema,
  /** The server URL for OBS's "Server" field. */
  rtmpUrl: z.string(),
  /** The master playlist viewers play. */
  playbackUrl: z.string(),
});

/** What reading a channel's key returns. */
export type StreamKeyDetails = z.infer<typeof streamKeyDetailsSchema>;

/** What creating or rotating a key returns: the secret, shown this once, and where to use it. */
export const issuedStreamKeySchema = z.object({
  key: streamKeyInfoSchema,
  /** The secret key for OBS's "Stream Key" field. */
  streamKey: z.string(),
  /** The server URL for OBS's "Server" field. */
  rtmpUrl: z.string(),
  /** The master playlist viewers play. */
  playbackUrl: z.string(),
});

/** What creating or rotating a key returns. */
export type IssuedStreamKey = z.infer<typeof issuedStreamKeySchema>;

/** Response of `GET /api/stream-keys`. */
export const streamKeyListSchema = z.object({ keys: z.array(streamKeyInfoSchema) });

/** One rendition of a live stream, as players and dashboards see it. */
export const renditionInfoSchema = z.object({
  name: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  fps: z.number(),
  bitrateKbps: z.number(),
});

/** One rendition of a live stream, as players and dashboards see it. */
export type RenditionInfo = z.infer<typeof renditionInfoSchema>;

/** Where a stream is in its life. */
export const streamStateSchema = z.enum(['starting', 'live', 'ended']);

/** A live (or just ended) stream of a channel. */
export const liveStreamSchema = z.object({
  id: z.string(),
  channel: channelNameSchema,
  state: streamStateSchema,
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  playbackUrl: z.string(),
  viewers: z.number().int().nonnegative(),
  renditions: z.array(renditionInfoSchema),
});

/** A live (or just ended) stream of a channel. */
export type LiveStream = z.infer<typeof liveStreamSchema>;

/** Response of `GET /api/streams`. */
export const liveStreamListSchema = z.object({ streams: z.array(liveStreamSchema) });

/** A screen share in a voice channel: who shares. */
export const shareSchema = z.object({
  peerId: z.string(),
  displayName: z.string(),
  /**
   * True once the share plays as the channel's HLS stream too (bridged onto the broadcast
   * stack): spectators then watch that stream instead of WebRTC.
   */
  broadcast: z.boolean().default(false),
  /**
   * True when spectators already watching over WebRTC move onto the broadcast too (an operator
   * routed the share there, or its voice node is overloaded); otherwise only new ones go there.
   */
  moveWebrtc: z.boolean().default(false),
});

/** Response of `GET /api/channels/:name/stream`: the channel's stream, or offline. */
export const channelStreamSchema = z.object({
  channel: channelNameSchema,
  playbackUrl: z.string(),
  stream: liveStreamSchema.nullable(),
  /** The channel's live screen share, watched over WebRTC as a spectator; null without one. */
  share: shareSchema.nullable(),
});

/** Response of `GET /api/channels/:name/stream`. */
export type ChannelStream = z.infer<typeof channelStreamSchema>;

/** Notifications on the public events WebSocket (`/ws/events`). */
export const eventNotificationSchemas = {
  /** A stream started publishing; it becomes playable with `streamLive`. */
  streamStarted: z.object({ stream: liveStreamSchema }),
  /** The first segments of every rendition are on the CDN: players can start. */
  streamLive: z.object({ stream: liveStreamSchema }),
  /** The stream ended; its playlists end with ENDLIST. */
  streamEnded: z.object({ stream: liveStreamSchema }),
  /** The number of viewers of a channel changed. */
  viewerCount: z.object({ channel: channelNameSchema, viewers: z.number().int().nonnegative() }),
  /** A participant of the channel's voice started sharing a screen: spectators may watch it. */
  shareStarted: shareSchema
    .omit({ broadcast: true, moveWebrtc: true })
    .extend({ channel: channelNameSchema }),
  /** That share ended. */
  shareEnded: shareSchema
    .omit({ broadcast: true, moveWebrtc: true })
    .extend({ channel: channelNameSchema }),
} as const;

/** Names of events-socket notifications. */
export type EventNotificationMethod = keyof typeof eventNotificationSchemas;

/** Data of one events-socket notification. */
export type EventNotificationData<M extends EventNotificationMethod> = z.infer<
  (typeof eventNotificationSchemas)[M]
>;

/** Renditions one stream may report: far above any ladder, low enough to bound a message. */
const MAX_RENDITIONS = 16;

/** A change in a stream's life that its ingest node reports to the api. */
export const streamReportSchema = z.discriminatedUnion('kind', [
  /** The transcoder starts, with these renditions. */
  z.object({
    kind: z.literal('started'),
    streamId: z.uuid(),
    renditions: z.array(renditionInfoSchema).max(MAX_RENDITIONS),
  }),
  /** The first segments of every rendition are playable. */
  z.object({ kind: z.literal('live'), streamId: z.uuid() }),
  /** The stream ended, and why. */
  z.object({ kind: z.literal('ended'), streamId: z.uuid(), reason: z.string().max(200) }),
]);

/** A change in a stream's life that its ingest node reports to the api. */
export type StreamReport = z.infer<typeof streamReportSchema>;

/** What the api grants a publisher whose key it accepted. */
export const publishGrantSchema = z.object({
  /** New id of this stream. */
  streamId: z.uuid(),
  /** Channel it publishes to. */
  channel: channelNameSchema,
  /** Id of the key used, so a rotation or revocation can end the stream. */
  keyId: z.string().min(1).max(64),
  /** Object key prefix the stream's playlists and segments go under. */
  storagePrefix: z.string().min(1).max(300),
});

/** What the api grants a publisher whose key it accepted. */
export type PublishGrant = z.infer<typeof publishGrantSchema>;

/** A stream an ingest node runs, as it replays them after each register. */
export const ingestedStreamSchema = z.object({
  /** The grant it runs under. */
  grant: publishGrantSchema,
  /** `live` once its first segments are playable. */
  state: z.enum(['starting', 'live']),
  /** Renditions being produced. */
  renditions: z.array(renditionInfoSchema).max(MAX_RENDITIONS),
});

/** A stream an ingest node runs. */
export type IngestedStream = z.infer<typeof ingestedStreamSchema>;
