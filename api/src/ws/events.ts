import type Koa from 'koa';
import type { WebSocket } from 'ws';
import {
  channelNameSchema,
  type EventNotificationData,
  type EventNotificationMethod,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { holdsGrant, type Authenticator, type Principal } from '../auth';
import type {
  PlaybackChannel,
  StreamService,
  StreamServiceEvents,
} from '../streams/stream-service';
import type { ChannelAccess } from '../channel-access';
import type { ShareEvent, ShareEvents } from '../voice/share-events';
import { keepAlive } from '@hearth/server-common';
import { originAllowed } from './origin';

/**
 * The events socket at `/ws/events`: stream started, live and ended, viewer counts, and screen
 * shares started and ended, for the
 * channels the caller may join (private ones only for those who may access them, with signed
 * playback URLs). Callers authenticate with `?access_token=<JWT>` or, while guest
 * access is on, `?name=<display name>`. `?channel=<name>` limits it to one channel; adding
 * `&watch=1` counts the connection as a viewer of that channel for as long as it stays open.
 * Clients only listen; anything they send is ignored.
 */
export function streamEvents(
  streams: StreamService,
  shares: ShareEvents,
  access: ChannelAccess,
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
      const { access_token: accessToken } = ctx.query;
      principal = await authenticator.authenticate({
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
    const visible = new VisibleChannels(access, principal);
    const record = channel === undefined ? undefined : await visible.get(channel);
    if (channel !== undefined && record === undefined) {
      socket.close(4404, `no channel ${channel}`);
      return;
    }
    const send = <M extends EventNotificationMethod>(method: M, data: EventNotificationData<M>) => {
      if (socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ kind: 'notification', method, data }));
      }
    };
    // Whether the caller may see a channel takes a lookup, so events go out through one chain
    // to keep their order. An event whose lookup fails is dropped: better missed than leaked.
    let delivery = Promise.resolve();
    const forChannel = (name: string, deliver: (channel: PlaybackChannel) => void) => {
      if ((channel !== undefined && channel !== name) || !holdsGrant(principal, 'join', name)) {
        return;
      }
      delivery = delivery
        .then(async () => {
          const allowed = await visible.get(name);
          if (allowed) deliver(allowed);
        })
        .catch(() => undefined);
    };
    let viewerCountSent = false;
    const unsubscribe = [
      subscribe(streams, 'streamStarted', (stream) => {
        forChannel(stream.channel, (allowed) =>
          send('streamStarted', { stream: streams.withPlaybackUrl(stream, allowed) }),
        );
      }),
      subscribe(streams, 'streamLive', (stream) => {
        forChannel(stream.channel, (allowed) =>
          send('streamLive', { stream: streams.withPlaybackUrl(stream, allowed) }),
        );
      }),
      subscribe(streams, 'streamEnded', (stream) => {
        forChannel(stream.channel, (allowed) =>
          send('streamEnded', { stream: streams.withPlaybackUrl(stream, allowed) }),
        );
      }),
      subscribe(streams, 'viewerCount', (name, viewers) => {
        if (name === channel) viewerCountSent = true;
        forChannel(name, () => send('viewerCount', { channel: name, viewers }));
      }),
      subscribeShares(shares, ({ event, ...share }) => {
        forChannel(share.channel, () => send(event, share));
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
      if (record?.exists && !closed) releaseViewer = streams.addViewer(channel);
      return;
    }
    // Counts are otherwise sent only when they change, and a stream's REST view carries none while
    // it is offline: a streamer page opened before going live would show 0 watching until the
    // next viewer came or went. A change heard meanwhile is newer than this snapshot.
    const viewers = await streams.viewers(channel).catch(() => undefined);
    if (viewers !== undefined && !viewerCountSent) send('viewerCount', { channel, viewers });
  };
}

// Seconds-old answers are good enough for event delivery: a viewer-count change of every channel
// would otherwise cost each socket a database lookup. A channel turned private reaches the
// sockets that lost access within this time.
const VISIBILITY_CACHE_MS = 5000;
// A socket that hears of more channels than this starts its cache over.
const VISIBILITY_CACHE_ENTRIES = 1000;

/** A channel the caller may see; `exists` is false for a name no channel has (yet). */
type VisibleChannel = PlaybackChannel & { readonly exists: boolean };

// One socket's view of which channels its caller may see.
class VisibleChannels {
  readonly #access: ChannelAccess;
  readonly #principal: Principal;
  readonly #known = new Map<string, { at: number; channel: VisibleChannel | undefined }>();

  constructor(access: ChannelAccess, principal: Principal) {
    this.#access = access;
    this.#principal = principal;
  }

  // The channel if the caller may see it (one that does not exist is public); undefined if not.
  async get(name: string): Promise<VisibleChannel | undefined> {
    const now = performance.now();
    const known = this.#known.get(name);
    if (known && now - known.at < VISIBILITY_CACHE_MS) return known.channel;
    let channel: VisibleChannel | undefined;
    try {
      const record = await this.#access.ifExists(this.#principal, name);
      channel = record
        ? { name, private: record.private, exists: true }
        : { name, private: false, exists: false };
    } catch (error) {
      if (!(error instanceof AppError && error.code === 'not_found')) throw error;
    }
    if (this.#known.size >= VISIBILITY_CACHE_ENTRIES) this.#known.clear();
    this.#known.set(name, { at: now, channel });
    return channel;
  }
}

function subscribe<E extends keyof StreamServiceEvents>(
  streams: StreamService,
  event: E,
  listener: (...args: StreamServiceEvents[E]) => void,
): () => void {
  streams.events.on(event, listener);
  return () => streams.events.off(event, listener);
}

function subscribeShares(shares: ShareEvents, listener: (event: ShareEvent) => void): () => void {
  shares.events.on('share', listener);
  return () => shares.events.off('share', listener);
}
