import { z } from 'zod';
import { channelAssignmentSchema, channelNameSchema, nodeIdSchema } from '@hearth/protocol';

/** Cluster bus topic of placement events. */
export const PLACEMENT_TOPIC = 'placement';

/** Published once by the instance that marked a node down, with the channels it had then. */
export const nodeDownMessageSchema = z.object({
  type: z.literal('nodeDown'),
  nodeId: nodeIdSchema,
  channels: z.array(channelNameSchema),
  /**
   * When it was marked down (epoch milliseconds, the marking instance's clock): what the node
   * reports after that, once it registers again, outlives the clean-up of its sessions.
   */
  at: z.number().int().nonnegative(),
});

/** A node stopped heartbeating and was marked down. */
export type NodeDownMessage = z.infer<typeof nodeDownMessageSchema>;

/** Published by the instance that changed a channel's assignment, with the new one. */
export const assignmentChangedMessageSchema = z.object({
  type: z.literal('assignmentChanged'),
  channel: channelNameSchema,
  assignment: channelAssignmentSchema,
});

/** A channel's assignment changed. */
export type AssignmentChangedMessage = z.infer<typeof assignmentChangedMessageSchema>;

/**
 * Published by the instance that deleted a channel's assignment: on request (`requested`), when
 * its last node left it (`empty`), or when no voice node was left up for it (`noVoiceNode`).
 */
export const releasedMessageSchema = z.object({
  type: z.literal('released'),
  channel: channelNameSchema,
  reason: z.enum(['requested', 'empty', 'noVoiceNode']),
});

/** A channel no longer has an assignment. */
export type ReleasedMessage = z.infer<typeof releasedMessageSchema>;

/** Any message of the placement topic. */
export const placementMessageSchema = z.discriminatedUnion('type', [
  nodeDownMessageSchema,
  assignmentChangedMessageSchema,
  releasedMessageSchema,
]);

/** Any message of the placement topic. */
export type PlacementMessage = z.infer<typeof placementMessageSchema>;

/** Events of `PlacementService.events`, as heard on the bus by every api instance. */
export type PlacementEvents = {
  /** A node was marked down. */
  nodeDown: [NodeDownMessage];
  /** A channel's assignment changed (placement, failover, allocation). */
  assignmentChanged: [AssignmentChangedMessage];
  /** A channel no longer has an assignment. */
  released: [ReleasedMessage];
};
