import type { Context } from 'koa';
import { EDGE_SECRET_HEADER } from '@hearth/cdn-config';
import { AppError, secretMatches } from '@hearth/server-common';
import type { ApiConfig } from '../config';
import type { PlacementService } from '../nodes/placement-service';
import type { StreamService } from './stream-service';

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
  if (expected === undefined || !secretMatches(ctx.get(EDGE_SECRET_HEADER), expected)) {
    throw new AppError('forbidden', 'only the CDN edge may ask');
  }
  const nodeId = await deps.streams.liveNodeOf(channel);
  const node = nodeId === undefined ? undefined : await deps.placement.node(nodeId);
  if (!node?.originUrl || node.status !== 'up') {
    throw new AppError('forbidden', 'no live origin serves this channel');
  }
  return new URL(node.originUrl).host;
}
