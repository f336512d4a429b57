import type Router from '@koa/router';
import type Koa from 'koa';
import type { AppDeps } from '../app';
import { channelParam, requireGrant, type ApiState } from '../middleware';

/** Adds the stream-key and live-stream routes. */
export function registerStreamRoutes(
  router: Router<ApiState>,
  deps: AppDeps,
  middleware: { limit: Koa.Middleware; signedIn: Koa.Middleware },
): void {
  const { limit, signedIn } = middleware;
  const streamer = [limit, signedIn, channelParam(), requireGrant('stream')];

  router.post('/api/channels/:name/stream-key', ...streamer, async (ctx) => {
    ctx.status = 201;
    ctx.body = await deps.streams.createKey(ctx.params.name!);
  });

  router.get('/api/channels/:name/stream-key', ...streamer, async (ctx) => {
    ctx.body = await deps.streams.keyDetails(ctx.params.name!);
  });

  router.post('/api/channels/:name/stream-key/rotate', ...streamer, async (ctx) => {
    ctx.body = await deps.streams.rotateKey(ctx.params.name!);
  });

  router.delete('/api/channels/:name/stream-key', ...streamer, async (ctx) => {
    await deps.streams.revokeKey(ctx.params.name!);
    ctx.status = 204;
  });

  router.get('/api/stream-keys', limit, signedIn, requireGrant('moderate'), async (ctx) => {
    ctx.body = { keys: await deps.streams.listKeys() };
  });

  router.get('/api/streams', limit, signedIn, requireGrant('join'), async (ctx) => {
    ctx.body = { streams: await deps.streams.liveStreams() };
  });

  router.get(
    '/api/channels/:name/stream',
    limit,
    signedIn,
    channelParam(),
    requireGrant('join'),
    async (ctx) => {
      ctx.body = await deps.streams.channelStream(ctx.params.name!);
    },
  );
}
