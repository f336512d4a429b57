import type Koa from 'koa';
import type { WebSocket } from 'ws';
import {
  channelNameSchema,
  type EventNotificationData,
  type EventNotificationMethod,
} from '@hearth/protocol';
import type { StreamService, StreamServiceEvents } from '../streams/stream-service';
import type { ChannelDirectory } from '../channel-directory';
import { keepAlive } from './heartbeat';
import { originAllowed } from './origin';

/**
 * The public events socket at `/ws/events`: stream started, live and ended, and viewer counts.
 * `?channel=<name>` limits it to one channel; adding `&watch=1` counts the connection as a viewer
 * of that channel for as long as it stays open. Clients only listen; anything they send is
 * ignored.
 */
export function streamEvents(
  streams: StreamService,
  channels: ChannelDirectory,
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
    const send = <M extends EventNotificationMethod>(method: M, data: EventNotificationData<M>) => {
      if (socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ kind: 'notification', method, data }));
      }
    };
    const forChannel = (name: string) => channel === undefined || channel === name;
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
        if (forChannel(name)) send('viewerCount', { channel: name, viewers });
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
    // Only channels that exist have viewers, so made-up names cannot grow the count table.
    if (
      channel !== undefined &&
      ctx.query.watch === '1' &&
      (await channels.get(channel)) &&
      !closed
    ) {
      releaseViewer = streams.addViewer(channel);
    }
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
