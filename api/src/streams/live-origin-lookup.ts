import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { AppError } from '@hearth/server-common';
import type { ApiConfig } from '../config';
import type { PlacementService } from '../nodes/placement-service';
import type { StreamService } from './stream-service';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * `host:port` of the ingest node that serves a channel's live stream as LL-HLS origin, for the CDN
 * edge, which must present API_EDGE_SECRET (compared in constant time). Refuses with `forbidden`
 * when the secret is missing or wrong, when no stream of the channel runs on a node that is up, or
 * when that node advertises no origin: the edge then reads the channel from S3.
 */
export async function liveOriginFor(
  ctx: Context,
  deps: { config: ApiConfig; streams: StreamService; placement: PlacementService },
  channel: string,
): Promise<string> {
  const expected = deps.config.edgeSecret;
  const presented = ctx.get('x-hearth-edge-secret');
  // Both sides are hashed first, so they have equal lengths whatever was presented.
  if (expected === undefined || !timingSafeEqual(sha256(presented), sha256(expected))) {
    throw new AppError('forbidden', 'only the CDN edge may ask');
  }
  const nodeId = await deps.streams.liveNodeOf(channel);
  const node = nodeId === undefined ? undefined : await deps.placement.node(nodeId);
  if (!node?.originUrl || node.status !== 'up') {
    throw new AppError('forbidden', 'no live origin serves this channel');
  }
  return new URL(node.originUrl).host;
}
