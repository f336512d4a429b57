import { z } from 'zod';
import { channelNameSchema, participantSchema } from './common';
import { errorInfoSchema } from './errors';
import { clientStatsSchema } from './link-quality';
import {
  dtlsParametersSchema,
  iceCandidateSchema,
  iceParametersSchema,
  mediaKindSchema,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
} from './rtp';
import { shareCaptureSchema, sharePresetIdSchema } from './share-presets';

/** Largest signaling message, in bytes, that either side accepts. */
export const MAX_SIGNALING_MESSAGE_BYTES = 64 * 1024;

/**
 * Largest WebSocket frame a server reads, for client signaling and node control alike. Bigger
 * frames are cut by the WebSocket layer; signaling messages between 64 KiB and this get a clear
 * error response instead.
 */
export const MAX_WEBSOCKET_FRAME_BYTES = 16 * MAX_SIGNALING_MESSAGE_BYTES;

const objectId = z.string().min(1).max(64);

/** What a producer sends: the microphone, a screen share's video, or the share's audio. */
export const mediaSourceSchema = z.enum(['microphone', 'screen', 'screen-audio']);

/** What a producer sends. */
export type MediaSource = z.infer<typeof mediaSourceSchema>;

/** Simulcast layers a screen share may send: low, middle and top. */
export const MAX_SHARE_ENCODINGS = 3;
const empty = z.object({}).strict();

/** Client to server requests: each method's request data and response data. */
export const voiceRequestSchemas = {
  /** Router RTP capabilities, needed to load the mediasoup-client Device before joining. */
  getRouterRtpCapabilities: {
    request: empty,
    response: z.object({ rtpCapabilities: rtpCapabilitiesSchema }),
  },
  /** Joins a channel, creating it when it is not open yet. */
  join: {
    request: z
      .object({ channel: channelNameSchema, rtpCapabilities: rtpCapabilitiesSchema })
      .strict(),
    response: z.object({
      peerId: z.string(),
      participants: z.array(participantSchema),
      activeSpeakerId: z.string().nullable(),
      /** A spectator receives the channel's shares only; it cannot send. */
      spectator: z.boolean(),
      /** The heaviest screen-share preset the channel allows. */
      maxSharePreset: sharePresetIdSchema,
    }),
  },
  /** Creates a WebRTC transport for sending (on the core) or receiving (on an edge). */
  createTransport: {
    request: z.object({ direction: z.enum(['send', 'recv']) }).strict(),
    response: z.object({
      id: z.string(),
      iceParameters: iceParametersSchema,
      iceCandidates: z.array(iceCandidateSchema),
      dtlsParameters: dtlsParametersSchema,
    }),
  },
  /** Completes the DTLS handshake parameters of a transport. */
  connectTransport: {
    request: z.object({ transportId: objectId, dtlsParameters: dtlsParametersSchema }).strict(),
    response: empty,
  },
  /** Asks for fresh ICE credentials after an ICE failure. */
  restartIce: {
    request: z.object({ transportId: objectId }).strict(),
    response: z.object({ iceParameters: iceParametersSchema }),
  },
  /**
   * Starts sending a track: the microphone (audio), or a screen share (video, with at most
   * `MAX_SHARE_ENCODINGS` simulcast layers) and the shared tab's or system's audio.
   */
  produce: {
    request: z
      .object({
        transportId: objectId,
        kind: mediaKindSchema,
        rtpParameters: rtpParametersSchema,
        paused: z.boolean().optional(),
        source: mediaSourceSchema.optional(),
        /** A screen share's capture size and rate, which its broadcast ladder stays under. */
        capture: shareCaptureSchema.optional(),
      })
      .strict()
      .superRefine((request, context) => {
        const source = request.source ?? (request.kind === 'video' ? 'screen' : 'microphone');
        if (request.capture !== undefined && source !== 'screen') {
          context.addIssue({
            code: 'custom',
            path: ['capture'],
            message: 'only a screen share has a capture size',
          });
        }
        if ((source === 'screen') !== (request.kind === 'video')) {
          context.addIssue({
            code: 'custom',
            path: ['source'],
            message: `not a ${request.kind} source`,
          });
        }
        const encodings = request.rtpParameters.encodings?.length ?? 1;
        const allowed = request.kind === 'video' ? MAX_SHARE_ENCODINGS : 1;
        if (encodings > allowed) {
          context.addIssue({
            code: 'custom',
            path: ['rtpParameters', 'encodings'],
            message: `at most ${allowed} encodings for ${request.kind}`,
          });
        }
      }),
    response: z.object({ producerId: z.string() }),
  },
  /** Stops sending a track. */
  closeProducer: {
    request: z.object({ producerId: objectId }).strict(),
    response: empty,
  },
  /** Mutes (pauses) or unmutes (resumes) the caller's own producer. */
  setProducerPaused: {
    request: z.object({ producerId: objectId, paused: z.boolean() }).strict(),
    response: empty,
  },
  /** Resumes a consumer that the server created paused, once the client has set it up. */
  resumeConsumer: {
    request: z.object({ consumerId: objectId }).strict(),
    response: empty,
  },
  /**
   * Pauses a video consumer the viewer does not show (a hidden tab), or resumes it. Audio goes
   * through `setDeafened`.
   */
  setConsumerPaused: {
    request: z.object({ consumerId: objectId, paused: z.boolean() }).strict(),
    response: empty,
  },
  /**
   * The simulcast layer a viewer wants for a share, from the size of its tile: 0 is the lowest.
   * Bandwidth estimation may still give it a lower one (`consumerLayers` says which).
   */
  setConsumerPreferredLayers: {
    request: z
      .object({
        consumerId: objectId,
        spatialLayer: z
          .number()
          .int()
          .min(0)
          .max(MAX_SHARE_ENCODINGS - 1),
        temporalLayer: z.number().int().min(0).max(2).optional(),
      })
      .strict(),
    response: empty,
  },
  /** Deafens (pauses every consumer of the caller) or undeafens. */
  setDeafened: {
    request: z.object({ deafened: z.boolean() }).strict(),
    response: empty,
  },
  /**
   * Stops a participant's screen share (its video and audio): one's own, or, for a moderator,
   * that of a lower rank. The sharer hears `shareStopped`.
   */
  stopShare: {
    request: z.object({ peerId: objectId }).strict(),
    response: empty,
  },
  /** Moderator action: mutes or releases another participant on the server. */
  setServerMuted: {
    request: z.object({ peerId: objectId, muted: z.boolean() }).strict(),
    response: empty,
  },
  /**
   * The client's own measurements of its connection, every few seconds while joined: the node
   * judges each participant's link quality from them and from mediasoup's statistics.
   */
  reportStats: {
    request: clientStatsSchema,
    response: empty,
  },
  /** Leaves the channel; the connection stays open for another join. */
  leave: {
    request: empty,
    response: empty,
  },
} as const;

/** Server to client notifications and their data. */
export const voiceNotificationSchemas = {
  /** Someone joined the caller's channel. */
  participantJoined: z.object({ participant: participantSchema }),
  /** Someone left the caller's channel. */
  participantLeft: z.object({ peerId: z.string() }),
  /** Someone's mute, deafen or server-mute state changed. */
  participantUpdated: z.object({ participant: participantSchema }),
  /** A paused consumer was created for the caller; set it up, then send `resumeConsumer`. */
  newConsumer: z.object({
    consumerId: z.string(),
    producerId: z.string(),
    peerId: z.string(),
    kind: mediaKindSchema,
    /** What the producer sends: a microphone, a screen share, or the share's audio. */
    source: mediaSourceSchema,
    rtpParameters: rtpParametersSchema,
  }),
  /**
   * The layer a share's consumer now forwards (null while nothing flows): a viewer below the
   * top layer it asked for is on a reduced layer.
   */
  consumerLayers: z.object({
    consumerId: z.string(),
    spatialLayer: z.number().int().nullable(),
    preferredSpatialLayer: z.number().int(),
  }),
  /**
   * To a sharer: keep the lowest `activeLayers` encodings of this share sending and deactivate
   * the rest, as no viewer has wanted them for a while; raised again as soon as one does.
   */
  shareLayers: z.object({
    producerId: z.string(),
    activeLayers: z.number().int().min(1).max(MAX_SHARE_ENCODINGS),
  }),
  /**
   * To a speaker: hold the microphone's Opus bitrate to this (the node adapts it to the loss on
   * the speaker's link), through the sender's `maxBitrate`.
   */
  audioBitrate: z.object({ maxBitrateKbps: z.number().int().min(6).max(510) }),
  /** To a sharer: a moderator stopped its share; these producers are closed already. */
  shareStopped: z.object({
    producerIds: z.array(z.string()).max(2),
    message: z.string().max(200),
  }),
  /** A consumer of the caller was closed by the server. */
  consumerClosed: z.object({ consumerId: z.string() }),
  /** The dominant speaker changed. */
  activeSpeaker: z.object({ peerId: z.string().nullable() }),
  /** Audio levels of the loudest producers, in dBov (-127 silent to 0 loudest). */
  audioLevels: z.object({
    levels: z.array(z.object({ peerId: z.string(), volume: z.number() })),
  }),
  /** The server lost the caller's media path (for example a worker died): join again. */
  reconnect: z.object({ reason: z.string() }),
  /** The channel was deleted or the server is shutting down: do not rejoin. */
  channelClosed: z.object({ reason: z.enum(['deleted', 'released', 'shutdown']) }),
  /** A moderator removed this participant: the server closes the connection after it (4403). */
  removed: z.object({ reason: z.enum(['kicked', 'banned']), message: z.string().max(200) }),
} as const;

/** Names of client to server request methods. */
export type VoiceMethod = keyof typeof voiceRequestSchemas;
/** Request data of one method. */
export type VoiceRequestData<M extends VoiceMethod> = z.infer<
  (typeof voiceRequestSchemas)[M]['request']
>;
/** Response data of one method. */
export type VoiceResponseData<M extends VoiceMethod> = z.infer<
  (typeof voiceRequestSchemas)[M]['response']
>;
/** Names of server to client notifications. */
export type VoiceNotificationMethod = keyof typeof voiceNotificationSchemas;
/** Data of one notification. */
export type VoiceNotificationData<M extends VoiceNotificationMethod> = z.infer<
  (typeof voiceNotificationSchemas)[M]
>;

/** Envelope of a client request; `data` is checked against the method's own schema after. */
export const requestEnvelopeSchema = z.object({
  kind: z.literal('request'),
  id: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  method: z.string().max(64),
  data: z.unknown().optional(),
});

/** Envelope of a server response; `id` is null when the request could not be read at all. */
export const responseEnvelopeSchema = z.discriminatedUnion('ok', [
  z.object({
    kind: z.literal('response'),
    id: z.number().int().nonnegative(),
    ok: z.literal(true),
    data: z.unknown(),
  }),
  z.object({
    kind: z.literal('response'),
    id: z.number().int().nonnegative().nullable(),
    ok: z.literal(false),
    error: errorInfoSchema,
  }),
]);

/** Envelope of a server notification. */
export const notificationEnvelopeSchema = z.object({
  kind: z.literal('notification'),
  method: z.string(),
  data: z.unknown(),
});

/** Any message the server sends. */
export const serverMessageSchema = z.union([responseEnvelopeSchema, notificationEnvelopeSchema]);

/** A client request envelope. */
export type RequestEnvelope = z.infer<typeof requestEnvelopeSchema>;
/** A server response envelope. */
export type ResponseEnvelope = z.infer<typeof responseEnvelopeSchema>;
/** A server notification envelope. */
export type NotificationEnvelope = z.infer<typeof notificationEnvelopeSchema>;
/** Any message the server sends. */
export type ServerMessage = z.infer<typeof serverMessageSchema>;

/** Tells whether a string names a known request method. */
export function isVoiceMethod(method: string): method is VoiceMethod {
  return Object.hasOwn(voiceRequestSchemas, method);
}

/** Tells whether a string names a known notification. */
export function isVoiceNotification(method: string): method is VoiceNotificationMethod {
  return Object.hasOwn(voiceNotificationSchemas, method);
}
