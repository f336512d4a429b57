import type Router from '@koa/router';
import type { ParameterizedContext } from 'koa';
import {
  guestSessionBodySchema,
  loginBodySchema,
  refreshBodySchema,
  registerBodySchema,
  sessionResponseSchema,
  type GuestSessionBody,
  type LoginBody,
  type RefreshBody,
  type RegisterBody,
  type TokenResponse,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { clearRefreshCookie, refreshCookieOf, setRefreshCookie } from '../accounts/refresh-cookie';
import type { AppDeps } from '../app';
import {
  authenticate,
  callerOf,
  rateLimit,
  validateBody,
  validateOptionalBody,
  type ApiState,
} from '../middleware';

/**
 * Adds the account routes under `/api/auth`. They have their own, stricter rate limit per client
 * address, on top of the login throttle (failures per address, delays per username).
 *
 * A session's refresh token travels in an httpOnly cookie for browsers, and in JSON bodies for
 * other clients (the CLI, scripts): login and register set the cookie and answer the token too;
 * refresh and logout take it from the body when there is one, else from the cookie. A refresh by
 * cookie answers no refresh token in its body, so a script on the page never holds one.
 */
export function registerAuthRoutes(router: Router<ApiState>, deps: AppDeps): void {
  const limit = rateLimit(deps.config.authRatePerSecond);
  const keepInCookie = (ctx: ParameterizedContext<ApiState>, tokens: TokenResponse) =>
    setRefreshCookie(ctx, tokens.refreshToken, {
      maxAgeSeconds: deps.config.refreshTokenTtlSeconds,
      secure: ctx.state.client.secure,
    });

  router.post('/api/auth/register', limit, validateBody(registerBodySchema), async (ctx) => {
    const tokens = await deps.accounts.register(ctx.state.body as RegisterBody);
    keepInCookie(ctx, tokens);
    ctx.status = 201;
    ctx.body = tokens;
  });

  router.post('/api/auth/guest', limit, validateBody(guestSessionBodySchema), (ctx) => {
    ctx.status = 201;
    ctx.body = deps.accounts.startGuestSession((ctx.state.body as GuestSessionBody).displayName);
  });

  router.post('/api/auth/login', limit, validateBody(loginBodySchema), async (ctx) => {
    const tokens = await deps.accounts.login(ctx.state.body as LoginBody, ctx.state.client.address);
    keepInCookie(ctx, tokens);
    ctx.body = tokens;
  });

  router.post('/api/auth/refresh', limit, validateOptionalBody(refreshBodySchema), async (ctx) => {
    const fromBody = (ctx.state.body as RefreshBody | undefined)?.refreshToken;
    const presented = fromBody ?? refreshCookieOf(ctx);
    if (presented === undefined) throw new AppError('unauthorized', 'no refresh token; sign in');
    let tokens: TokenResponse;
    try {
      tokens = await deps.accounts.refresh(presented);
    } catch (error) {
      // A refused cookie is of no further use; a database outage leaves it for the next try.
      if (error instanceof AppError && error.code === 'unauthorized') {
        clearRefreshCookie(ctx, ctx.state.client.secure);
      }
      throw error;
    }
    keepInCookie(ctx, tokens);
    if (fromBody !== undefined) {
      ctx.body = tokens;
      return;
    }
    ctx.body = sessionResponseSchema.parse(tokens);
  });

  router.post('/api/auth/logout', limit, validateOptionalBody(refreshBodySchema), async (ctx) => {
    const presented =
      (ctx.state.body as RefreshBody | undefined)?.refreshToken ?? refreshCookieOf(ctx);
    if (presented !== undefined) await deps.accounts.logout(presented);
    clearRefreshCookie(ctx, ctx.state.client.secure);
    ctx.status = 204;
  });

  router.get('/api/auth/me', limit, authenticate(deps.authenticator), async (ctx) => {
    ctx.body = await deps.accounts.describe(callerOf(ctx));
  });
}
