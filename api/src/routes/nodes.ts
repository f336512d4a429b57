import {
  channelAssignmentSchema,
  channelNodeSchema,
  channelSfuStatusSchema,
  nodeListSchema,
  type NodeInfo,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import type { PlacementService } from '../nodes/placement-service';
import { route, type Route, type RouteAuth } from './route';

async function assignmentOf(placement: PlacementService, channel: string) {
  const assignment = await placement.assignment(channel);
  if (!assignment) throw new AppError('not_found', `channel ${channel} has no voice node`);
  return assignment;
}

// Placement is the operators' business: `moderate` server-wide, whatever channel the path names.
const MODERATOR: RouteAuth = { grant: 'moderate', serverWide: true };

/** The node listing and the SFU-management routes; every one needs `moderate` server-wide. */
export const nodeRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/nodes',
    summary: 'Registered voice and ingest nodes with their load and status',
    auth: MODERATOR,
    success: { status: 200, schema: nodeListSchema },
    handle: async ({ deps }) => ({ nodes: await deps.placement.nodes() }),
  }),
  route({
    method: 'post',
    path: '/api/channels/:name/sfu',
    summary: "Places the channel's core router on a voice node (503 when none has room)",
    auth: MODERATOR,
    success: { status: 201, schema: channelAssignmentSchema },
    handle: ({ deps, params }) => deps.placement.allocate(params.name!),
  }),
  route({
    method: 'get',
    path: '/api/channels/:name/sfu',
    summary: "The channel's core and edge nodes with their status (404 when unallocated)",
    auth: MODERATOR,
    success: { status: 200, schema: channelSfuStatusSchema },
    async handle({ deps, params }) {
      const assignment = await assignmentOf(deps.placement, params.name!);
      const nodes = await Promise.all(
        [assignment.core, ...assignment.edges].map((id) => deps.placement.node(id)),
      );
      return { assignment, nodes: nodes.filter((node): node is NodeInfo => node !== undefined) };
    },
  }),
  route({
    method: 'delete',
    path: '/api/channels/:name/sfu',
    summary: "Releases the channel's node assignment (404 when unallocated)",
    auth: MODERATOR,
    success: { status: 204 },
    async handle({ deps, params }) {
      const channel = params.name!;
      if (!(await deps.placement.release(channel))) {
        throw new AppError('not_found', `channel ${channel} has no voice node`);
      }
    },
  }),
  route({
    method: 'get',
    path: '/api/channels/:name/node',
    summary: "The node serving the channel's core and its signaling URL (404 when unallocated)",
    auth: MODERATOR,
    success: { status: 200, schema: channelNodeSchema },
    async handle({ deps, params }) {
      const assignment = await assignmentOf(deps.placement, params.name!);
      const node = await deps.placement.node(assignment.core);
      return {
        channel: assignment.channel,
        nodeId: assignment.core,
        ...(node?.signalingUrl ? { signalingUrl: node.signalingUrl } : {}),
      };
    },
  }),
];
