import fs from 'node:fs';
import path from 'node:path';
import Koa from 'koa';
import Router from '@koa/router';
import serveStatic from 'koa-static';
import websockify from 'koa-websocket';
import type { Registry } from 'prom-client';
import type { WebSocket } from 'ws';
import {
  MAX_SIGNALING_MESSAGE_BYTES,
  createChannelBodySchema,
  type Channel,
  type CreateChannelBody,
  type Participant,
} from '@hearth/protocol';
import { AppError, type Identity, type Logger } from '@hearth/server-common';
import type { VoiceNode } from '@hearth/voice-sfu';
import type { Authenticator } from './auth';
import type { ChannelDirectory, ChannelRecord } from './channel-directory';
import type { ApiConfig } from './config';
import {
  authenticate,
  channelParam,
  errorHandler,
  rateLimit,
  requestContext,
  requireGrant,
  validateBody,
  type ApiState,
} from './middleware';
import { buildOpenApiDocument } from './openapi';
import { registerStreamRoutes } from './routes/streams';
import { keepAlive } from './ws/heartbeat';
import { originAllowed } from './ws/origin';
import type { StreamService } from './streams/stream-service';
import { streamEvents } from './ws/events';

/** Everything the api needs, built by `main.ts` or by a test. */
export interface AppDeps {
  /** Api settings. */
  config: ApiConfig;
  /** Root logger. */
  logger: Logger;
  /** The voice-sfu node this api fronts (in process in the embedded profile). */
  voice: VoiceNode;
  /** Channel records. */
  channels: ChannelDirectory;
  /** Resolves callers to identities. */
  authenticator: Authenticator;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** Prometheus registry served at `/metrics`. */
  registry: Registry;
}

/** The Koa application with its WebSocket server attached at `listen()`. */
export type ApiApp = ReturnType<typeof websockify<ApiState>>;

// Frames above this are cut by the WebSocket layer itself; smaller messages that are still too
// large get a clear error response from the session instead.
const WS_MAX_PAYLOAD_BYTES = 16 * MAX_SIGNALING_MESSAGE_BYTES;

/** Builds the api: REST routes, signaling WebSocket and the web app. It never listens. */
export function createApp(deps: AppDeps): ApiApp {
  const app = websockify<ApiState>(new Koa(), { maxPayload: WS_MAX_PAYLOAD_BYTES });
  app.proxy = false;
  app.use(requestContext(deps.logger));
  app.use(errorHandler());
  app.use(apiRouter(deps).routes() as Koa.Middleware);
  app.use(webApp(deps.config.webDistDir));
  app.ws.use(streamEvents(deps.streams, deps.channels, deps.config.allowedOrigins));
  app.ws.use(voiceSignaling(deps));
  return app;
}

/** The REST routes; `createApp` mounts them, and tests read their table. */
export function apiRouter(deps: AppDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const limit = rateLimit(deps.config.restRatePerSecond);
  const signedIn = authenticate(deps.authenticator);

  router.get('/api/health', (ctx) => {
    ctx.body = { status: 'ok', checks: { process: true } };
  });

  router.get('/api/ready', (ctx) => {
    const checks = {
      workers: deps.voice.pool.slots.length === deps.voice.config.numWorkers,
      webApp: fs.existsSync(path.join(deps.config.webDistDir, 'index.html')),
    };
    const ready = Object.values(checks).every(Boolean);
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ok' : 'unavailable', checks };
  });

  // Public and the same for every channel of a node: clients load their Device from it while
  // the user is still on the join form, so joining skips that step.
  router.get('/api/voice/capabilities', limit, (ctx) => {
    ctx.body = { rtpCapabilities: deps.voice.routerRtpCapabilities };
  });

  router.get('/api/channels', limit, async (ctx) => {
    const records = await deps.channels.list();
    ctx.body = { channels: records.map((record) => describeChannel(record, deps.voice)) };
  });

  router.get('/api/channels/:name', limit, channelParam(), async (ctx) => {
    const record = await deps.channels.get(ctx.params.name ?? '');
    if (!record) throw new AppError('not_found', `no channel ${ctx.params.name}`);
    ctx.body = describeChannel(record, deps.voice);
  });

  router.post(
    '/api/channels',
    limit,
    signedIn,
    requireGrant('moderate'),
    validateBody(createChannelBodySchema),
    async (ctx) => {
      const { name } = ctx.state.body as CreateChannelBody;
      const record = await deps.channels.create(name);
      ctx.status = 201;
      ctx.body = describeChannel(record, deps.voice);
    },
  );

  router.delete(
    '/api/channels/:name',
    limit,
    signedIn,
    channelParam(),
    requireGrant('moderate'),
    async (ctx) => {
      const name = ctx.params.name!;
      await deps.channels.delete(name);
      deps.voice.channels.close(name);
      // A deleted channel keeps no way to go live: its key goes, which ends a live stream.
      await deps.streams.revokeKey(name).catch((error: unknown) => {
        if (!(error instanceof AppError && error.code === 'not_found')) throw error;
      });
      ctx.status = 204;
    },
  );

  registerStreamRoutes(router, deps, { limit, signedIn });

  router.get('/metrics', async (ctx) => {
    ctx.type = deps.registry.contentType;
    ctx.body = await deps.registry.metrics();
  });

  const openApiDocument = buildOpenApiDocument();
  router.get('/api/docs', (ctx) => {
    ctx.body = openApiDocument;
  });

  router.all('/api/{*rest}', () => {
    throw new AppError('not_found', 'no such endpoint');
  });

  return router;
}

function describeChannel(record: ChannelRecord, voice: VoiceNode): Channel {
  const participants: Participant[] = voice.channels.get(record.name)?.participants() ?? [];
  return { name: record.name, createdAt: record.createdAt.toISOString(), participants };
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

function voiceSignaling(deps: AppDeps): Koa.Middleware {
  const authorizeJoin = async (channel: string, identity: Identity): Promise<Identity> => {
    const record = await deps.channels.get(channel);
    if (!record) {
      // Guests may open a channel by joining it, which is how the autojoin link works.
      if (!identity.guest) throw new AppError('not_found', `no channel ${channel}`);
      await deps.channels.ensure(channel);
    }
    return identity;
  };
  return (ctx) => {
    const socket = (ctx as unknown as { websocket: WebSocket }).websocket;
    if (ctx.path !== '/ws/voice') {
      socket.close(4404, 'unknown endpoint');
      return;
    }
    if (!originAllowed(ctx.get('origin'), ctx.get('host'), deps.config.allowedOrigins)) {
      socket.close(4403, 'origin not allowed');
      return;
    }
    let identity: Identity;
    try {
      const name = ctx.query.name;
      identity = deps.authenticator.authenticate({
        guestName: typeof name === 'string' ? name : undefined,
        authorization: ctx.get('authorization') || undefined,
      });
    } catch (error) {
      const code = error instanceof AppError && error.code === 'bad_request' ? 4400 : 4401;
      socket.close(code, error instanceof AppError ? error.message : 'unauthorized');
      return;
    }
    keepAlive(socket);
    deps.voice.accept(socket, identity, authorizeJoin);
  };
}
