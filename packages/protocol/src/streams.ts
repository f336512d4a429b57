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

/** Response of `GET /api/channels/:name/stream`: the channel's stream, or offline. */
export const channelStreamSchema = z.object({
  channel: channelNameSchema,
  playbackUrl: z.string(),
  stream: liveStreamSchema.nullable(),
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
} as const;

/** Names of events-socket notifications. */
export type EventNotificationMethod = keyof typeof eventNotificationSchemas;

/** Data of one events-socket notification. */
export type EventNotificationData<M extends EventNotificationMethod> = z.infer<
  (typeof eventNotificationSchemas)[M]
>;
