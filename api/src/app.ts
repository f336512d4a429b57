import fs from 'node:fs';
import path from 'node:path';
import Koa from 'koa';
import Router from '@koa/router';
import serveStatic from 'koa-static';
import websockify from 'koa-websocket';
import type { Registry } from 'prom-client';
import type { WebSocket } from 'ws';
import {
  MAX_WEBSOCKET_FRAME_BYTES,
  createChannelBodySchema,
  updateChannelBodySchema,
  type Channel,
  type Participant,
} from '@hearth/protocol';
import { AppError, keepAlive, type JoinTokenIssuer, type Logger } from '@hearth/server-common';
import type { NodeAgent, VoiceNode } from '@hearth/voice-sfu';
import type { AccountService } from './accounts/account-service';
import { accountIdOf, type Authenticator } from './auth';
import { clientAddress, trustedProxies } from './client-address';
import { ChannelAccess } from './channel-access';
import type { ChannelDirectory, ChannelRecord } from './channel-directory';
import type { ApiConfig } from './config';
import type { MembershipStore } from './db/memberships';
import type { ModerationStore } from './db/moderation';
import type { SessionHistory } from './db/session-history';
import type { UserStore } from './db/users';
import {
  authenticate,
  callerOf,
  channelParam,
  errorHandler,
  rateLimit,
  requestContext,
  requireGrant,
  requireServerGrant,
  validateBody,
  type ApiState,
} from './middleware';
import { metricsRoute } from './metrics-endpoint';
import { buildOpenApiDocument } from './openapi';
import { securityHeaders } from './security-headers';
import type { PlacementService } from './nodes/placement-service';
import { registerAdminRoutes } from './routes/admin';
import { registerAuthRoutes } from './routes/auth';
import { registerModerationRoutes } from './routes/moderation';
import { registerNodeRoutes } from './routes/nodes';
import { registerStreamRoutes } from './routes/streams';
import { originAllowed } from './ws/origin';
import type { StreamService } from './streams/stream-service';
import type { NodeHub } from './voice/node-hub';
import type { PresenceStore } from './voice/presence';
import type { JoinReservations } from './voice/reservations';
import { EMBEDDED_SIGNALING_PATH, registerVoiceRoutes } from './voice/routes';
import { streamEvents } from './ws/events';

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
  /** Prometheus registry served at `/metrics` (see `metricsRoute` for who may read it). */
  registry: Registry;
}

/** The Koa application with its WebSocket server attached at `listen()`. */
export type ApiApp = ReturnType<typeof websockify<ApiState>>;

/** Builds the api: REST routes, signaling WebSocket and the web app. It never listens. */
export function createApp(deps: AppDeps): ApiApp {
  const app = websockify<ApiState>(new Koa(), { maxPayload: MAX_WEBSOCKET_FRAME_BYTES });
  // Forwarding headers count only from API_TRUSTED_PROXIES, which `clientAddress` decides alone.
  app.proxy = false;
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
      new ChannelAccess({ channels: deps.channels, memberships: deps.memberships }),
      deps.authenticator,
      deps.config.allowedOrigins,
    ),
  );
  app.ws.use(voiceSockets(deps));
  return app;
}

/** The REST routes; `createApp` mounts them, and tests read their table. */
export function apiRouter(deps: AppDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const limit = rateLimit(deps.config.restRatePerSecond);
  const signedIn = authenticate(deps.authenticator);
  const access = new ChannelAccess({ channels: deps.channels, memberships: deps.memberships });

  router.get('/api/health', (ctx) => {
    ctx.body = { status: 'ok', checks: { process: true } };
  });

  router.get('/api/ready', async (ctx) => {
    const nodes = await deps.placement.nodes();
    const checks = {
      voiceNodes: nodes.some((node) => node.kind === 'voice' && node.status === 'up'),
      webApp: fs.existsSync(path.join(deps.config.webDistDir, 'index.html')),
    };
    const ready = Object.values(checks).every(Boolean);
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ok' : 'unavailable', checks };
  });

  registerVoiceRoutes(
    router,
    {
      placement: deps.placement,
      joinTokens: deps.joinTokens,
      moderation: deps.moderation,
      presence: deps.presence,
      sessions: deps.sessions,
      reservations: deps.reservations,
      limits: deps.config,
      channels: deps.channels,
      access,
      rtpCapabilities: () => deps.voice?.routerRtpCapabilities ?? deps.nodeHub.rtpCapabilities,
      joinRatePerSecond: deps.config.joinRatePerSecond,
    },
    { limit, signedIn },
  );
  registerAuthRoutes(router, deps);

  router.get('/api/channels', limit, signedIn, requireGrant('join'), async (ctx) => {
    // Private channels are left out for those who may not access them.
    const records = await access.filter(callerOf(ctx), await deps.channels.list());
    ctx.body = {
      channels: await Promise.all(records.map((record) => describeChannel(record, deps.presence))),
    };
  });

  router.get(
    '/api/channels/:name',
    limit,
    signedIn,
    channelParam(),
    requireGrant('join'),
    async (ctx) => {
      const record = await access.require(callerOf(ctx), ctx.params.name!);
      ctx.body = await describeChannel(record, deps.presence);
    },
  );

  // Moderators of a channel make it private (members only) or public again. A live stream
  // restarts, since its storage prefix decides which edge path serves it.
  router.patch(
    '/api/channels/:name',
    limit,
    signedIn,
    channelParam(),
    requireGrant('moderate'),
    validateBody(updateChannelBodySchema),
    async (ctx) => {
      const { private: isPrivate } = updateChannelBodySchema.parse(ctx.state.body);
      const before = await access.require(callerOf(ctx), ctx.params.name!);
      const record = await deps.channels.setPrivate(before.name, isPrivate);
      if (before.private !== record.private) await deps.streams.restartLiveStream(record.name);
      ctx.body = await describeChannel(record, deps.presence);
    },
  );

  router.post(
    '/api/channels',
    limit,
    signedIn,
    requireGrant('moderate'),
    validateBody(createChannelBodySchema),
    async (ctx) => {
      const { name, private: isPrivate } = createChannelBodySchema.parse(ctx.state.body);
      const record = await deps.channels.create(name, accountIdOf(callerOf(ctx)), {
        private: isPrivate,
      });
      ctx.status = 201;
      ctx.body = await describeChannel(record, deps.presence);
    },
  );

  router.delete(
    '/api/channels/:name',
    limit,
    signedIn,
    channelParam(),
    requireGrant('moderate'),
    async (ctx) => {
      const { name } = await access.require(callerOf(ctx), ctx.params.name!);
      // A deleted channel keeps no way to go live: its key goes first, which ends a live stream
      // (deleting the channel would drop the key row without telling anyone).
      await deps.streams.revokeKey(name).catch((error: unknown) => {
        if (!(error instanceof AppError && error.code === 'not_found')) throw error;
      });
      await deps.channels.delete(name);
      await deps.nodeHub.closeChannel(name, 'deleted');
      await deps.placement.release(name);
      ctx.status = 204;
    },
  );

  registerStreamRoutes(router, deps, { limit, signedIn });
  registerAdminRoutes(router, deps, { limit, signedIn });
  registerModerationRoutes(router, deps, { limit, signedIn });
  registerNodeRoutes(router, deps, { limit, signedIn, requireGrant: requireServerGrant });

  router.get('/metrics', metricsRoute(deps.registry, deps.config));

  const openApiDocument = buildOpenApiDocument();
  router.get('/api/docs', (ctx) => {
    ctx.body = openApiDocument;
  });

  router.all('/api/{*rest}', () => {
    throw new AppError('not_found', 'no such endpoint');
  });

  return router;
}

// Participants are what the nodes report, so the list covers every node of a channel.
async function describeChannel(record: ChannelRecord, presence: PresenceStore): Promise<Channel> {
  const participants: Participant[] = await presence.list(record.name);
  return {
    name: record.name,
    createdAt: record.createdAt.toISOString(),
    private: record.private,
    participants,
  };
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
