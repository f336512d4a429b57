import fs from 'node:fs';
import path from 'node:path';
import Koa from 'koa';
import type Router from '@koa/router';
import serveStatic from 'koa-static';
import websockify from 'koa-websocket';
import type { Registry } from 'prom-client';
import type { WebSocket } from 'ws';
import { MAX_WEBSOCKET_FRAME_BYTES } from '@hearth/protocol';
import {
  AppError,
  KeyedRateLimiter,
  keepAlive,
  type JoinTokenIssuer,
  type Logger,
} from '@hearth/server-common';
import type { NodeAgent, VoiceNode } from '@hearth/voice-sfu';
import type { AccountService } from './accounts/account-service';
import type { Authenticator } from './auth';
import { clientAddress, trustedProxies } from './client-address';
import { ChannelAccess } from './channel-access';
import type { ChannelDirectory } from './channel-directory';
import type { ApiConfig } from './config';
import type { MembershipStore } from './db/memberships';
import type { ModerationStore } from './db/moderation';
import type { SessionHistory } from './db/session-history';
import type { UserStore } from './db/users';
import { httpMetrics } from './http-metrics';
import { errorHandler, requestContext, type ApiState } from './middleware';
import { securityHeaders } from './security-headers';
import type { PlacementService } from './nodes/placement-service';
import { ChannelRecordCache } from './routes/channel-records';
import { apiRoutes } from './routes/index';
import { mountRoutes } from './routes/mount';
import { EMBEDDED_SIGNALING_PATH } from './routes/voice';
import { originAllowed } from './ws/origin';
import type { StreamService } from './streams/stream-service';
import type { NodeHub } from './voice/node-hub';
import type { PresenceStore } from './voice/presence';
import type { JoinReservations } from './voice/reservations';
import { streamEvents } from './ws/events';
import type { ShareEvents } from './voice/share-events';
import type { ShareBridges } from './handoff/share-bridges';

/** Everything the api needs, built by `main.ts` or by a test. */
export interface AppDeps {
  /** Api settings. */
  config: ApiConfig;
  /** Root logger. */
  logger: Logger;
  /** The voice node running in this process (embedded profile), if any. */
  voice: VoiceNode | undefined;
  /** The in-process voice node's link to the control plane, serving `/ws/voice`. */
  localVoiceAgent: NodeAgent | undefined;
  /** Node registry and placement of channels on nodes. */
  placement: PlacementService;
  /** Where voice nodes connect (`/ws/nodes`) and how messages reach them. */
  nodeHub: NodeHub;
  /** Signs the tokens voice nodes admit clients with. */
  joinTokens: JoinTokenIssuer;
  /** Who is in which voice channel, on every node. */
  presence: PresenceStore;
  /** Channel records. */
  channels: ChannelDirectory;
  /** Resolves callers to principals. */
  authenticator: Authenticator;
  /** Registration, login, token refresh and the principal of each account. */
  accounts: AccountService;
  /** Accounts, for the admin routes. */
  users: UserStore;
  /** Per-account grants, for the admin routes. */
  memberships: MembershipStore;
  /** Voice session history: `open` when someone joins a channel, `close` when they leave. */
  sessions: SessionHistory;
  /** Bans and lasting server mutes. */
  moderation: ModerationStore;
  /** Seats held by join tokens not admitted yet. */
  reservations: JoinReservations;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** Screen shares starting and ending on any node, as every api instance hears them. */
  shares: ShareEvents;
  /** Screen shares of this instance's voice nodes bridged onto HLS. */
  bridges: ShareBridges;
  /** Prometheus registry served at `/metrics` (see `serveMetrics` for who may read it). */
  registry: Registry;
}

/** The Koa application with its WebSocket server attached at `listen()`. */
export type ApiApp = ReturnType<typeof websockify<ApiState>>;

/** Builds the api: REST routes, signaling WebSocket and the web app. It never listens. */
export function createApp(deps: AppDeps): ApiApp {
  const app = websockify<ApiState>(new Koa(), { maxPayload: MAX_WEBSOCKET_FRAME_BYTES });
  // Forwarding headers count only from API_TRUSTED_PROXIES, which `clientAddress` decides alone.
  app.proxy = false;
  app.use(httpMetrics(deps.registry));
  app.use(clientAddress(trustedProxies(deps.config.trustedProxies)));
  app.use(
    securityHeaders({
      playbackBaseUrl: deps.streams.playbackBaseUrl,
      connectOrigins: deps.config.allowedOrigins,
    }),
  );
  app.use(requestContext(deps.logger));
  app.use(errorHandler());
  app.use(apiRouter(deps).routes() as Koa.Middleware);
  app.use(webApp(deps.config.webDistDir));
  app.ws.use(
    streamEvents(
      deps.streams,
      deps.shares,
      new ChannelAccess({ channels: deps.channels, memberships: deps.memberships }),
      deps.authenticator,
      deps.config.allowedOrigins,
    ),
  );
  app.ws.use(voiceSockets(deps));
  return app;
}

/** The REST routes of the route table, with the caches their handlers share. */
export function apiRouter(deps: AppDeps): Router<ApiState> {
  return mountRoutes(apiRoutes, {
    ...deps,
    access: new ChannelAccess({ channels: deps.channels, memberships: deps.memberships }),
    channelRecords: new ChannelRecordCache(deps.channels),
    channelCreations: new KeyedRateLimiter({
      ratePerSecond: deps.config.channelsPerHour / 3600,
      burst: deps.config.channelsPerHour,
    }),
  });
}

// The app is a single-page app: known files are served as they are, and every other GET that
// asks for HTML gets index.html so client-side routes such as /voice/<channel> load.
function webApp(distDir: string): Koa.Middleware {
  const files = serveStatic(distDir, { index: 'index.html', maxage: 0 });
  return async (ctx, next) => {
    await files(ctx, next);
    if (ctx.body != null || ctx.method !== 'GET' || !ctx.accepts('html')) return;
    const index = path.join(distDir, 'index.html');
    if (!fs.existsSync(index)) {
      throw new AppError('unavailable', 'the web app is not built; run `npm run setup`');
    }
    ctx.type = 'html';
    ctx.body = fs.createReadStream(index);
  };
}

// `/ws/voice?token=<join token>` reaches the voice node running in this process, and
// `/ws/nodes` is where voice-sfu processes connect to the control plane.
function voiceSockets(deps: AppDeps): Koa.Middleware {
  return (ctx) => {
    const socket = (ctx as unknown as { websocket: WebSocket }).websocket;
    if (ctx.path === '/ws/nodes') {
      deps.nodeHub.acceptSocket(socket, ctx.get('authorization') || undefined);
      return;
    }
    if (ctx.path !== EMBEDDED_SIGNALING_PATH || !deps.localVoiceAgent) {
      socket.close(4404, 'unknown endpoint');
      return;
    }
    if (!originAllowed(ctx.get('origin'), ctx.get('host'), deps.config.allowedOrigins)) {
      socket.close(4403, 'origin not allowed');
      return;
    }
    keepAlive(socket);
    const token = ctx.query.token;
    deps.localVoiceAgent.acceptWithToken(socket, typeof token === 'string' ? token : undefined);
  };
}
