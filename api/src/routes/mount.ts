import Router from '@koa/router';
import type Koa from 'koa';
import type { z } from 'zod';
import { describeZodError } from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { holdsGrant } from '../auth';
import {
  authenticate,
  callerOf,
  channelParam,
  rateLimit,
  validateBody,
  validateOptionalBody,
  type ApiContext,
  type ApiState,
} from '../middleware';
import type { Route, RouteDeps, RouteLimit } from './route';

/**
 * Builds the Koa router of a route table: for each route its rate limit, authentication, channel
 * parameter check, grant check, body parsing and handler, in that order. Paths under `/api/` that
 * no route matches answer 404.
 */
export function mountRoutes(routes: readonly Route[], deps: RouteDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const limits: Record<Exclude<RouteLimit, 'none'>, Koa.Middleware> = {
    rest: rateLimit(deps.config.restRatePerSecond),
    auth: rateLimit(deps.config.authRatePerSecond),
    join: rateLimit(deps.config.joinRatePerSecond),
  };
  const signedIn = authenticate(deps.authenticator);
  for (const spec of routes) {
    const chain: Koa.Middleware[] = [];
    const limit = spec.limit ?? 'rest';
    if (limit !== 'none') chain.push(limits[limit]);
    const channelScoped = spec.path.includes(':name');
    if (spec.auth) chain.push(signedIn);
    if (channelScoped) chain.push(channelParam());
    if (spec.auth) chain.push(requireAuth(spec.auth, channelScoped && !spec.auth.serverWide));
    if (spec.body) {
      chain.push(spec.bodyOptional ? validateOptionalBody(spec.body) : validateBody(spec.body));
    }
    chain.push(async (ctx) => {
      const context = ctx as unknown as ApiContext & { params: Record<string, string> };
      context.status = spec.success.status;
      const answer = await spec.handle({
        ctx: context,
        deps,
        params: context.params,
        body: context.state.body as never,
        query: (spec.query ? parseQuery(spec.query, context.query) : undefined) as never,
        get caller() {
          return callerOf(context);
        },
      });
      if (answer !== undefined) context.body = answer;
    });
    router[spec.method](spec.path, ...chain);
  }
  router.all('/api/{*rest}', () => {
    throw new AppError('not_found', 'no such endpoint');
  });
  return router;
}

function parseQuery(schema: z.ZodObject, query: unknown): unknown {
  const parsed = schema.safeParse(query);
  if (!parsed.success) {
    throw new AppError('bad_request', `invalid query: ${describeZodError(parsed.error)}`);
  }
  return parsed.data;
}

function requireAuth(auth: NonNullable<Route['auth']>, inChannel: boolean): Koa.Middleware {
  return async (ctx, next) => {
    const caller = callerOf(ctx as ApiContext);
    if (auth.accountsOnly && caller.guest) {
      throw new AppError('forbidden', 'guests cannot do this; sign in');
    }
    if (auth.grant) {
      const channel = inChannel
        ? (ctx as unknown as { params: { name: string } }).params.name
        : undefined;
      if (!holdsGrant(caller, auth.grant, channel)) {
        throw new AppError(
          'forbidden',
          channel === undefined
            ? `missing the "${auth.grant}" grant server-wide`
            : `missing the "${auth.grant}" grant in channel ${channel}`,
        );
      }
    }
    await next();
  };
}
