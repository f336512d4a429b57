import { z } from 'zod';
import { nodeIdSchema } from './nodes';
import { shareCaptureSchema } from './share-presets';
import { publishGrantSchema } from './streams';

/**
 * A share bridge carries a screen share from the voice node holding it to an ingest node, whose
 * ffmpeg feeds the HLS ladder. Each stream travels on a PlainTransport of its own, RTP on one
 * port and RTCP on the next, to a receiver on the ingest node that repairs loss and passes the
 * clear RTP on to ffmpeg, whose SDP input opens one socket pair per media line.
 */

/** Streams one bridge carries at most: the share's video, its audio and the microphone. */
export const MAX_BRIDGE_STREAMS = 3;

/** The SRTP cipher suite of bridges (RFC 3711's default). */
export const BRIDGE_SRTP_SUITE = 'AES_CM_128_HMAC_SHA1_80';

/**
 * Which part of the share a bridge stream carries: its video, its audio (a tab's or the
 * system's), or the sharer's microphone. The ingest node mixes the audio streams.
 */
export const bridgeStreamRoleSchema = z.enum(['video', 'audio', 'microphone']);

/** Which part of the share a bridge stream carries. */
export type BridgeStreamRole = z.infer<typeof bridgeStreamRoleSchema>;

/** One RTP stream of a bridge, as the voice node sends it: what the receiver's SDP says. */
export const bridgeStreamSchema = z.object({
  role: bridgeStreamRoleSchema,
  mimeType: z.enum(['video/VP8', 'audio/opus']),
  payloadType: z.number().int().min(96).max(127),
  clockRate: z.union([z.literal(90_000), z.literal(48_000)]),
  channels: z.number().int().min(1).max(2).optional(),
  ssrc: z.number().int().min(1).max(0xffff_ffff),
  /** The voice node's RTCP port of the stream, where key frame requests and NACKs go. */
  rtcpPort: z.number().int().min(1).max(65535),
  /** The AES_CM_128_HMAC_SHA1_80 master key and salt the voice node sends with, when encrypted. */
  srtpKeyBase64: z
    .string()
    .regex(/^[A-Za-z0-9+/]{40}$/, { error: 'must be a 30-byte SRTP master key and salt' })
    .optional(),
});

/** One RTP stream of a bridge. */
export type BridgeStream = z.infer<typeof bridgeStreamSchema>;

/** What the voice node sends on a bridge, stream by stream, video first. */
export const bridgeOfferSchema = z.object({
  /** The share's capture as its sharer reported it, when it did: the ladder stays under it. */
  capture: shareCaptureSchema.optional(),
  streams: z
    .array(bridgeStreamSchema)
    .min(1)
    .max(MAX_BRIDGE_STREAMS)
    .refine((streams) => new Set(streams.map((s) => s.role)).size === streams.length, {
      error: 'one stream per role',
    })
    .refine((streams) => streams[0]?.role === 'video', { error: 'the video comes first' }),
});

/** What the voice node sends on a bridge. */
export type BridgeOffer = z.infer<typeof bridgeOfferSchema>;

/** Where the ingest node receives a bridge: RTP of stream i on `ports[i]`, its RTCP on the next. */
export const bridgeAnswerSchema = z.object({
  ip: z.string().min(1).max(64),
  ports: z.array(z.number().int().min(1024).max(65534)).min(1).max(MAX_BRIDGE_STREAMS),
});

/** Where the ingest node receives a bridge. */
export type BridgeAnswer = z.infer<typeof bridgeAnswerSchema>;

/** The share's top layer as the ingest node plans its ladder for it: no rung above it. */
export const bridgeSourceSchema = shareCaptureSchema;

/** The share's top layer as the ingest node plans its ladder for it. */
export type BridgeSource = z.infer<typeof bridgeSourceSchema>;

/**
 * Where a bridge runs, set by the api when it opens one and carried along each step, so that any
 * api instance can pass a step on: voice node → api → ingest node → api → voice node.
 */
export const bridgeRouteSchema = z.object({
  bridgeId: z.uuid(),
  voiceNodeId: nodeIdSchema,
  ingestNodeId: nodeIdSchema,
  /** The stream the ingest node runs the share as, under the channel's playback URL. */
  grant: publishGrantSchema,
  source: bridgeSourceSchema,
});

/** Where a bridge runs. */
export type BridgeRoute = z.infer<typeof bridgeRouteSchema>;
