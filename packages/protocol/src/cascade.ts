import { z } from 'zod';
import { channelNameSchema, participantSchema } from './common';
import { nodeIdSchema } from './nodes';
import { mediaKindSchema, rtpParametersSchema } from './rtp';
import { MAX_SHARE_ENCODINGS, mediaSourceSchema } from './signaling';

/** Where one end of a pipe listens, and the SRTP key it sends with. */
export const pipeEndpointSchema = z.object({
  ip: z.string().min(1).max(64),
  port: z.number().int().min(1).max(65535),
  srtp: z.object({
    cryptoSuite: z.enum([
      'AEAD_AES_256_GCM',
      'AEAD_AES_128_GCM',
      'AES_CM_128_HMAC_SHA1_80',
      'AES_CM_128_HMAC_SHA1_32',
    ]),
    keyBase64: z.string().min(1).max(256),
  }),
});

/** One end of a pipe: address and SRTP key. */
export type PipeEndpoint = z.infer<typeof pipeEndpointSchema>;

/** A participant as another node sees it: the public view plus the node serving it. */
export const remoteParticipantSchema = participantSchema.extend({ nodeId: nodeIdSchema });

/** A participant served by another node. */
export type RemoteParticipant = z.infer<typeof remoteParticipantSchema>;

const linkFields = { channel: channelNameSchema, linkId: z.uuid() };

/**
 * Messages between the voice-sfu nodes of one channel, relayed by the api. An edge node opens a
 * link to the channel's core node; both ends pipe their producers over it and the core, the hub,
 * forwards what one edge sends to every other edge.
 */
export const cascadeMessageSchema = z.discriminatedUnion('type', [
  /** Edge → core: open a link; here is my end of the pipe. */
  z.object({ type: z.literal('linkOffer'), ...linkFields, endpoint: pipeEndpointSchema }),
  /** Core → edge: the link is open; here is my end. */
  z.object({ type: z.literal('linkAnswer'), ...linkFields, endpoint: pipeEndpointSchema }),
  /** Either way: the link is gone; drop what came over it. */
  z.object({ type: z.literal('linkClosed'), ...linkFields, reason: z.string().max(200) }),
  /** A producer now flows over the pipe with these parameters. */
  z.object({
    type: z.literal('producerOpened'),
    ...linkFields,
    producerId: z.uuid(),
    peerId: z.uuid(),
    kind: mediaKindSchema,
    source: mediaSourceSchema,
    rtpParameters: rtpParametersSchema,
    paused: z.boolean(),
  }),
  /** A piped producer was paused or resumed at its source. */
  z.object({
    type: z.literal('producerPaused'),
    ...linkFields,
    producerId: z.uuid(),
    paused: z.boolean(),
  }),
  /** A piped producer closed at its source. */
  z.object({ type: z.literal('producerClosed'), ...linkFields, producerId: z.uuid() }),
  /** Every participant the sender serves or relays, replacing what it sent before. */
  z.object({
    type: z.literal('roster'),
    ...linkFields,
    // About 150 bytes each: the largest roster still fits in one WebSocket frame.
    participants: z.array(remoteParticipantSchema).max(5000),
  }),
  /** A participant joined or changed. */
  z.object({
    type: z.literal('participantUpserted'),
    ...linkFields,
    participant: remoteParticipantSchema,
  }),
  /** A participant left. */
  z.object({ type: z.literal('participantRemoved'), ...linkFields, peerId: z.uuid() }),
  /**
   * Towards a share's source: the viewers on the sender's side of the link want its layers up to
   * `spatialLayer` (-1: none), so the sharer's node switches off what nobody wants.
   */
  z.object({
    type: z.literal('shareWish'),
    ...linkFields,
    producerId: z.uuid(),
    spatialLayer: z
      .number()
      .int()
      .min(-1)
      .max(MAX_SHARE_ENCODINGS - 1),
  }),
  /** A moderator on one node stops the share of a participant served by another. */
  z.object({
    type: z.literal('stopShare'),
    ...linkFields,
    peerId: z.uuid(),
    message: z.string().max(200),
  }),
  /** A moderator on one node mutes or unmutes a participant served by another. */
  z.object({
    type: z.literal('serverMute'),
    ...linkFields,
    peerId: z.uuid(),
    muted: z.boolean(),
  }),
]);

/** A message between two voice-sfu nodes. */
export type CascadeMessage = z.infer<typeof cascadeMessageSchema>;
