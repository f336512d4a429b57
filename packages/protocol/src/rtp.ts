import { z } from 'zod';

// These schemas check the shape of the WebRTC parameters a client sends. mediasoup validates the
// values in depth when they are used, so unknown fields pass through untouched for it to judge.

const parameterValue = z.union([z.string(), z.number(), z.boolean()]);
const codecParameters = z.record(z.string(), parameterValue);
const rtcpFeedback = z.looseObject({ type: z.string(), parameter: z.string().optional() });
const mediaKind = z.enum(['audio', 'video']);

/** The media kinds a producer or consumer can carry. */
export const mediaKindSchema = mediaKind;

/** RTP capabilities of an endpoint (router or device). */
export const rtpCapabilitiesSchema = z.looseObject({
  codecs: z
    .array(
      z.looseObject({
        kind: mediaKind,
        mimeType: z.string(),
        clockRate: z.number().int().positive(),
        preferredPayloadType: z.number().int().optional(),
        channels: z.number().int().positive().optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: z.array(rtcpFeedback).optional(),
      }),
    )
    .max(256)
    .optional(),
  headerExtensions: z
    .array(
      z.looseObject({
        kind: mediaKind,
        uri: z.string(),
        preferredId: z.number().int(),
        preferredEncrypt: z.boolean().optional(),
        direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
      }),
    )
    .max(64)
    .optional(),
});

/** The highest bitrate one encoding may ask for: 50 Mbit/s, far above a 2160p60 share. */
export const MAX_ENCODING_BITRATE = 50_000_000;

// One encoding (a simulcast layer): bounded so a client cannot ask the server for absurd rates
// or layer counts.
const encodingSchema = z.looseObject({
  ssrc: z.number().int().min(0).max(0xffffffff).optional(),
  rid: z.string().max(16).optional(),
  maxBitrate: z.number().int().min(1000).max(MAX_ENCODING_BITRATE).optional(),
  maxFramerate: z.number().min(1).max(120).optional(),
  scaleResolutionDownBy: z.number().min(1).max(16).optional(),
  scalabilityMode: z.string().max(16).optional(),
  dtx: z.boolean().optional(),
  active: z.boolean().optional(),
});

/** RTP send or receive parameters of one producer or consumer. */
export const rtpParametersSchema = z.looseObject({
  mid: z.string().optional(),
  codecs: z
    .array(
      z.looseObject({
        mimeType: z.string(),
        payloadType: z.number().int().min(0).max(127),
        clockRate: z.number().int().positive(),
        channels: z.number().int().positive().optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: z.array(rtcpFeedback).optional(),
      }),
    )
    .min(1)
    .max(32),
  headerExtensions: z
    .array(
      z.looseObject({
        uri: z.string(),
        id: z.number().int(),
        encrypt: z.boolean().optional(),
        parameters: codecParameters.optional(),
      }),
    )
    .max(32)
    .optional(),
  encodings: z.array(encodingSchema).max(8).optional(),
  rtcp: z
    .looseObject({
      cname: z.string().optional(),
      reducedSize: z.boolean().optional(),
      mux: z.boolean().optional(),
    })
    .optional(),
});

/** DTLS parameters of a WebRTC transport. */
export const dtlsParametersSchema = z.looseObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(z.object({ algorithm: z.string(), value: z.string().max(256) }))
    .min(1)
    .max(8),
});

/** ICE parameters of a WebRTC transport. */
export const iceParametersSchema = z.looseObject({
  usernameFragment: z.string(),
  password: z.string(),
  iceLite: z.boolean().optional(),
});

/** One ICE candidate offered by the server. */
export const iceCandidateSchema = z.looseObject({
  foundation: z.string(),
  priority: z.number(),
  ip: z.string(),
  protocol: z.enum(['udp', 'tcp']),
  port: z.number().int(),
  type: z.literal('host'),
  tcpType: z.literal('passive').optional(),
});

/** RTP capabilities of an endpoint. */
export type RtpCapabilities = z.infer<typeof rtpCapabilitiesSchema>;
/** RTP parameters of one producer or consumer. */
export type RtpParameters = z.infer<typeof rtpParametersSchema>;
/** DTLS parameters of a WebRTC transport. */
export type DtlsParameters = z.infer<typeof dtlsParametersSchema>;
/** ICE parameters of a WebRTC transport. */
export type IceParameters = z.infer<typeof iceParametersSchema>;
/** One ICE candidate offered by the server. */
export type IceCandidate = z.infer<typeof iceCandidateSchema>;
