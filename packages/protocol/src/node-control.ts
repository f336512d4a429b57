import { z } from 'zod';
import { bridgeAnswerSchema, bridgeOfferSchema, bridgeRouteSchema } from './bridge';
import { cascadeMessageSchema } from './cascade';
import { MAX_REPORTED_LINKS, participantLinkSchema } from './link-quality';
import { channelNameSchema, participantSchema } from './common';
import { rtpCapabilitiesSchema } from './rtp';
import { ingestedStreamSchema, publishGrantSchema, streamReportSchema } from './streams';
import {
  channelAssignmentSchema,
  nodeIdSchema,
  nodeLoadSchema,
  nodeRegistrationSchema,
} from './nodes';

/** Sessions per `replay` message: a few hundred bytes each, well inside one WebSocket frame. */
export const REPLAY_BATCH_SIZE = 500;

/** One live session a node replays after registering: who it serves, where, in what state. */
export const replayedSessionSchema = z.object({
  peerId: z.uuid(),
  channel: channelNameSchema,
  userId: z.string().min(1).max(128),
  participant: participantSchema,
});

/** One live session a node replays after registering. */
export type ReplayedSession = z.infer<typeof replayedSessionSchema>;

/** Streams an ingest node may replay: far above what one node transcodes. */
export const MAX_REPLAYED_STREAMS = 200;

/** What a node sends the api over its control WebSocket. */
export const nodeToApiMessageSchema = z.discriminatedUnion('type', [
  /** First message: who the node is and what it can take. */
  z.object({
    type: z.literal('register'),
    registration: nodeRegistrationSchema,
    /** RTP capabilities of a voice node's routers, which clients may load before joining. */
    rtpCapabilities: rtpCapabilitiesSchema.optional(),
  }),
  /** Sent every second or so; a node that stops sending is marked down. */
  z.object({ type: z.literal('heartbeat'), load: nodeLoadSchema }),
  /** A message for another node of a channel, relayed by the api. */
  z.object({ type: z.literal('relay'), to: nodeIdSchema, message: cascadeMessageSchema }),
  /** A participant joined a channel on the node: a voice session starts. */
  z.object({
    type: z.literal('sessionOpened'),
    peerId: z.uuid(),
    channel: channelNameSchema,
    userId: z.string().min(1).max(128),
    displayName: z.string().min(1).max(64),
    /** The join token that admitted it: the api releases the seat it reserved. */
    tokenId: z.uuid().optional(),
  }),
  /** A participant on the node changed: muted, deafened, or muted by a moderator. */
  z.object({
    type: z.literal('participantChanged'),
    channel: channelNameSchema,
    participant: participantSchema,
  }),
  /** A participant left, or was dropped with its channel: the session ends. */
  z.object({ type: z.literal('sessionClosed'), peerId: z.uuid() }),
  /** The node no longer hosts the channel: its last participant and link are gone. */
  z.object({ type: z.literal('channelClosed'), channel: channelNameSchema }),
  /**
   * Sent right after each `register`: every session the node serves now, in batches, the last
   * with `done`. The api rebuilds the node's presence and session history from it (after an api
   * restart, or after the node was marked down) and closes the node's sessions not in it.
   */
  z.object({
    type: z.literal('replay'),
    sessions: z.array(replayedSessionSchema).max(REPLAY_BATCH_SIZE),
    done: z.boolean(),
  }),
  /** The node is stopping on purpose, its work finished: mark it down now. */
  z.object({ type: z.literal('deregister') }),
  /** An ingest node asks whether a publisher's stream key may publish; answered by id. */
  z.object({
    type: z.literal('authorizePublish'),
    requestId: z.uuid(),
    streamKey: z.string().max(256),
    ip: z.string().max(64),
  }),
  /** An ingest node reports a change in one of its streams. */
  z.object({ type: z.literal('streamReport'), report: streamReportSchema }),
  /**
   * Sent by an ingest node right after each `register`: every stream it runs now. The api ends
   * the node's other streams and takes these as live (after an api restart, or a mark-down).
   */
  z.object({
    type: z.literal('streamsReplay'),
    streams: z.array(ingestedStreamSchema).max(MAX_REPLAYED_STREAMS),
  }),
  /** A voice node's spectators of a channel (receive-only watchers of its shares) changed. */
  z.object({
    type: z.literal('audience'),
    channel: channelNameSchema,
    spectators: z.number().int().min(0).max(1_000_000),
  }),
  /** A voice node's participants' links in a channel, every few seconds, for moderators. */
  z.object({
    type: z.literal('links'),
    channel: channelNameSchema,
    links: z.array(participantLinkSchema).max(MAX_REPORTED_LINKS),
  }),
  /** A voice node opened the bridge's transports: here is what it will send, and from where. */
  z.object({
    type: z.literal('bridgeOffer'),
    route: bridgeRouteSchema,
    offer: bridgeOfferSchema,
    sourceAddress: z.ipv4(),
  }),
  /** An ingest node runs the bridge's ffmpeg: here is where to send. */
  z.object({
    type: z.literal('bridgeAnswer'),
    route: bridgeRouteSchema,
    answer: bridgeAnswerSchema,
  }),
  /** A node could not run its part of a bridge, or its part ended (the share stopped). */
  z.object({
    type: z.literal('bridgeClosed'),
    bridgeId: z.uuid(),
    reason: z.string().max(200),
  }),
]);

/** A message from a node to the api. */
export type NodeToApiMessage = z.infer<typeof nodeToApiMessageSchema>;

/** What the api sends a node over its control WebSocket. */
export const apiToNodeMessageSchema = z.discriminatedUnion('type', [
  /**
   * The registration was accepted. A voice node checks join tokens with `joinTokenKey`, the api's
   * Ed25519 public key (base64url); it cannot sign any.
   */
  z.object({
    type: z.literal('registered'),
    nodeId: nodeIdSchema,
    joinTokenKey: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/)
      .optional(),
  }),
  /** The registry lost or marked the node down (it was silent too long): register again. */
  z.object({ type: z.literal('registerAgain') }),
  /** A message from another node of a channel. */
  z.object({ type: z.literal('relay'), from: nodeIdSchema, message: cascadeMessageSchema }),
  /** A channel's placement changed, e.g. its core moved after a node failure. */
  z.object({ type: z.literal('assignment'), assignment: channelAssignmentSchema }),
  /** A node stopped answering; links to it are dead. */
  z.object({ type: z.literal('nodeDown'), nodeId: nodeIdSchema }),
  /** Close the channel here and tell its participants why. */
  z.object({
    type: z.literal('closeChannel'),
    channel: channelNameSchema,
    reason: z.enum(['deleted', 'released']),
  }),
  /** The answer to `authorizePublish`: the publisher may publish under this grant. */
  z.object({
    type: z.literal('publishAuthorized'),
    requestId: z.uuid(),
    grant: publishGrantSchema,
  }),
  /** The answer to `authorizePublish`: the publisher is refused, with an error code. */
  z.object({
    type: z.literal('publishRefused'),
    requestId: z.uuid(),
    code: z.string().max(64),
    message: z.string().max(300),
  }),
  /**
   * A moderator kicked or banned a user: its participants in the channel (`*`: in every channel)
   * are told why and disconnected.
   */
  z.object({
    type: z.literal('removeUser'),
    scope: z.union([z.literal('*'), channelNameSchema]),
    userId: z.string().min(1).max(128),
    reason: z.enum(['kicked', 'banned']),
    message: z.string().max(200),
  }),
  /** A stream key was rotated or revoked: streams published with it end. */
  z.object({ type: z.literal('keyRevoked'), keyId: z.string().min(1).max(64) }),
  /** To a voice node: open the transports of a bridge of this participant's share. */
  z.object({
    type: z.literal('openBridge'),
    route: bridgeRouteSchema,
    channel: channelNameSchema,
    peerId: z.uuid(),
    srtp: z.boolean(),
  }),
  /** To an ingest node: receive a bridge and run it as the route's stream. */
  z.object({
    type: z.literal('startBridge'),
    route: bridgeRouteSchema,
    offer: bridgeOfferSchema,
    sourceAddress: z.ipv4(),
  }),
  /** To a voice node: send the bridge there. */
  z.object({ type: z.literal('connectBridge'), bridgeId: z.uuid(), answer: bridgeAnswerSchema }),
  /** To either node of a bridge: end your part of it. */
  z.object({ type: z.literal('closeBridge'), bridgeId: z.uuid(), reason: z.string().max(200) }),
]);

/** A message from the api to a node. */
export type ApiToNodeMessage = z.infer<typeof apiToNodeMessageSchema>;
