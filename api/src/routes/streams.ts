import type Router from '@koa/router';
import type Koa from 'koa';
import type { AppDeps } from '../app';
import { ChannelAccess } from '../channel-access';
import { callerOf, channelParam, requireGrant, type ApiState } from '../middleware';

/** Adds the stream-key and live-stream routes. */
export function registerStreamRoutes(
  router: Router<ApiState>,
  deps: AppDeps,
  middleware: { limit: Koa.Middleware; signedIn: Koa.Middleware },
): void {
  const { limit, signedIn } = middleware;
  const access = new ChannelAccess({ channels: deps.channels, memberships: deps.memberships });
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

  // Streams of private channels are listed, with signed playback URLs, only to those who may
  // access the channel.
  router.get('/api/streams', limit, signedIn, requireGrant('join'), async (ctx) => {
    const live = await deps.streams.liveStreams();
    const channels = new Map(
      (await deps.channels.list()).map((record) => [record.name, record] as const),
    );
    const visible = new Set(
      (await access.filter(callerOf(ctx), [...channels.values()])).map((record) => record.name),
    );
    ctx.body = {
      streams: live.flatMap((stream) => {
        const channel = channels.get(stream.channel);
        if (!channel) return [stream];
        return visible.has(channel.name) ? [deps.streams.withPlaybackUrl(stream, channel)] : [];
      }),
    };
  });

  router.get(
    '/api/channels/:name/stream',
    limit,
    signedIn,
    channelParam(),
    requireGrant('join'),
    async (ctx) => {
      const name = ctx.params.name!;
      // A channel not created yet is public; a private one is `not_found` to outsiders.
      const channel = await access.ifExists(callerOf(ctx), name);
      ctx.body = await deps.streams.channelStream(channel ?? { name, private: false });
    },
  );
}
