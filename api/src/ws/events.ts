import type Koa from 'koa';
import type { WebSocket } from 'ws';
import {
  channelNameSchema,
  type EventNotificationData,
  type EventNotificationMethod,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { holdsGrant, type Authenticator, type Principal } from '../auth';
import type { StreamService, StreamServiceEvents } from '../streams/stream-service';
import type { ChannelDirectory } from '../channel-directory';
import { keepAlive } from '@hearth/server-common';
import { originAllowed } from './origin';

/**
 * The events socket at `/ws/events`: stream started, live and ended, and viewer counts, for the
 * channels the caller may join. Callers authenticate with `?access_token=<JWT>` or, while guest
 * access is on, `?name=<display name>`. `?channel=<name>` limits it to one channel; adding
 * `&watch=1` counts the connection as a viewer of that channel for as long as it stays open.
 * Clients only listen; anything they send is ignored.
 */
export function streamEvents(
  streams: StreamService,
  channels: ChannelDirectory,
  authenticator: Authenticator,
  allowedOrigins: readonly string[],
): Koa.Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/ws/events') return next();
    const socket = (ctx as unknown as { websocket: WebSocket }).websocket;
    if (!originAllowed(ctx.get('origin'), ctx.get('host'), allowedOrigins)) {
      socket.close(4403, 'origin not allowed');
      return;
    }
    const rawChannel = ctx.query.channel;
    let channel: string | undefined;
    if (rawChannel !== undefined) {
      const parsed = channelNameSchema.safeParse(rawChannel);
      if (!parsed.success) {
        socket.close(4400, 'invalid channel');
        return;
      }
      channel = parsed.data;
    }
    let principal: Principal;
    try {
      const { name, access_token: accessToken } = ctx.query;
      principal = await authenticator.authenticate({
        guestName: typeof name === 'string' ? name : undefined,
        accessToken: typeof accessToken === 'string' ? accessToken : undefined,
        authorization: ctx.get('authorization') || undefined,
      });
    } catch (error) {
      const code = error instanceof AppError && error.code === 'bad_request' ? 4400 : 4401;
      socket.close(code, error instanceof AppError ? error.message : 'unauthorized');
      return;
    }
    // A client that left while its token was checked would never unsubscribe below.
    if (socket.readyState !== socket.OPEN) return;
    if (channel !== undefined && !holdsGrant(principal, 'join', channel)) {
      socket.close(4403, `missing the "join" grant in channel ${channel}`);
      return;
    }
    const send = <M extends EventNotificationMethod>(method: M, data: EventNotificationData<M>) => {
      if (socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ kind: 'notification', method, data }));
      }
    };
    const forChannel = (name: string) =>
      (channel === undefined || channel === name) && holdsGrant(principal, 'join', name);
    let viewerCountSent = false;
    const unsubscribe = [
      subscribe(streams, 'streamStarted', (stream) => {
        if (forChannel(stream.channel)) send('streamStarted', { stream });
      }),
      subscribe(streams, 'streamLive', (stream) => {
        if (forChannel(stream.channel)) send('streamLive', { stream });
      }),
      subscribe(streams, 'streamEnded', (stream) => {
        if (forChannel(stream.channel)) send('streamEnded', { stream });
      }),
      subscribe(streams, 'viewerCount', (name, viewers) => {
        if (!forChannel(name)) return;
        viewerCountSent = true;
        send('viewerCount', { channel: name, viewers });
      }),
    ];
    keepAlive(socket);
    let releaseViewer: (() => void) | undefined;
    let closed = false;
    socket.on('close', () => {
      closed = true;
      for (const stop of unsubscribe) stop();
      releaseViewer?.();
    });
    if (channel === undefined) return;
    if (ctx.query.watch === '1') {
      // Only channels that exist have viewers, so made-up names cannot grow the count table.
      if ((await channels.get(channel)) && !closed) releaseViewer = streams.addViewer(channel);
      return;
    }
    // Counts are otherwise sent only when they change, and a stream's REST view carries none while
    // it is offline: a streamer page opened before going live would show 0 watching until the
    // next viewer came or went. A change heard meanwhile is newer than this snapshot.
    const viewers = await streams.viewers(channel).catch(() => undefined);
    if (viewers !== undefined && !viewerCountSent) send('viewerCount', { channel, viewers });
  };
}

function subscribe<E extends keyof StreamServiceEvents>(
  streams: StreamService,
  event: E,
  listener: (...args: StreamServiceEvents[E]) => void,
): () => void {
  streams.events.on(event, listener);
  return () => streams.events.off(event, listener);
}
