import type Router from '@koa/router';
import type Koa from 'koa';
import {
  channelAssignmentSchema,
  channelNodeSchema,
  channelSfuStatusSchema,
  nodeListSchema,
  type ChannelNode,
  type ChannelSfuStatus,
  type Grant,
  type NodeInfo,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { channelParam, type ApiState } from '../middleware';
import type { PlacementService } from '../nodes/placement-service';
import type { ApiOperation } from '../openapi';

/** The node and SFU-management operations, for the OpenAPI document. */
export const nodeOperations: readonly ApiOperation[] = [
  {
    method: 'get',
    path: '/api/nodes',
    summary: 'Registered voice and ingest nodes with their load and status',
    auth: { grant: 'moderate' },
    success: { status: 200, schema: nodeListSchema },
  },
  {
    method: 'post',
    path: '/api/channels/:name/sfu',
    summary: "Places the channel's core router on a voice node (503 when none has room)",
    auth: { grant: 'moderate' },
    success: { status: 201, schema: channelAssignmentSchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name/sfu',
    summary: "The channel's core and edge nodes with their status (404 when unallocated)",
    auth: { grant: 'moderate' },
    success: { status: 200, schema: channelSfuStatusSchema },
  },
  {
    method: 'delete',
    path: '/api/channels/:name/sfu',
    summary: "Releases the channel's node assignment (404 when unallocated)",
    auth: { grant: 'moderate' },
    success: { status: 204 },
  },
  {
    method: 'get',
    path: '/api/channels/:name/node',
    summary: "The node serving the channel's core and its signaling URL (404 when unallocated)",
    auth: { grant: 'moderate' },
    success: { status: 200, schema: channelNodeSchema },
  },
];

/** Adds the node listing and the SFU-management routes; every one needs the `moderate` grant. */
export function registerNodeRoutes(
  router: Router<ApiState>,
  deps: { placement: PlacementService },
  middleware: {
    limit: Koa.Middleware;
    signedIn: Koa.Middleware;
    requireGrant: (grant: Grant) => Koa.Middleware;
  },
): void {
  const { limit, signedIn } = middleware;
  const moderator = [limit, signedIn, middleware.requireGrant('moderate')];
  const channelModerator = [limit, signedIn, channelParam(), middleware.requireGrant('moderate')];
  const { placement } = deps;

  const assignmentOf = async (channel: string) => {
    const assignment = await placement.assignment(channel);
    if (!assignment) throw new AppError('not_found', `channel ${channel} has no voice node`);
    return assignment;
  };

  router.get('/api/nodes', ...moderator, async (ctx) => {
    ctx.body = { nodes: await placement.nodes() };
  });

  router.post('/api/channels/:name/sfu', ...channelModerator, async (ctx) => {
    ctx.status = 201;
    ctx.body = await placement.allocate(ctx.params.name!);
  });

  router.get('/api/channels/:name/sfu', ...channelModerator, async (ctx) => {
    const assignment = await assignmentOf(ctx.params.name!);
    const nodes = await Promise.all(
      [assignment.core, ...assignment.edges].map((id) => placement.node(id)),
    );
    const body: ChannelSfuStatus = {
      assignment,
      nodes: nodes.filter((node): node is NodeInfo => node !== undefined),
    };
    ctx.body = body;
  });

  router.delete('/api/channels/:name/sfu', ...channelModerator, async (ctx) => {
    const channel = ctx.params.name!;
    if (!(await placement.release(channel))) {
      throw new AppError('not_found', `channel ${channel} has no voice node`);
    }
    ctx.status = 204;
  });

  router.get('/api/channels/:name/node', ...channelModerator, async (ctx) => {
    const assignment = await assignmentOf(ctx.params.name!);
    const node = await placement.node(assignment.core);
    const body: ChannelNode = {
      channel: assignment.channel,
      nodeId: assignment.core,
      ...(node?.signalingUrl ? { signalingUrl: node.signalingUrl } : {}),
    };
    ctx.body = body;
  });
}
