import {
  guestSessionBodySchema,
  guestSessionSchema,
  loginBodySchema,
  meSchema,
  refreshBodySchema,
  registerBodySchema,
  sessionResponseSchema,
  tokenResponseSchema,
  type TokenResponse,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { clearRefreshCookie, refreshCookieOf, setRefreshCookie } from '../accounts/refresh-cookie';
import type { ApiContext } from '../middleware';
import { route, type Route, type RouteDeps } from './route';

// A session's refresh token travels in an httpOnly cookie for browsers, and in JSON bodies for
// other clients (the CLI, scripts): login and register set the cookie and answer the token too;
// refresh and logout take it from the body when there is one, else from the cookie. A refresh by
// cookie answers no refresh token in its body, so a script on the page never holds one.
function keepInCookie(ctx: ApiContext, deps: RouteDeps, tokens: TokenResponse): void {
  setRefreshCookie(ctx, tokens.refreshToken, {
    maxAgeSeconds: deps.config.refreshTokenTtlSeconds,
    secure: ctx.state.client.secure,
  });
}

/**
 * The account routes under `/api/auth`. They have their own, stricter rate limit per client
 * address, on top of the login throttle (failures per address, delays per username).
 */
export const authRoutes: readonly Route[] = [
  route({
    method: 'post',
    path: '/api/auth/register',
    summary:
      'Creates an account and signs it in (while registration is on); the first account of a fresh install becomes the owner. The refresh token comes in the body and in the hearth_refresh cookie (HttpOnly, SameSite=Strict, Path=/api/auth, Secure over TLS)',
    limit: 'auth',
    body: registerBodySchema,
    errors: { 403: 'Registration is disabled', 409: 'The username is taken' },
    success: { status: 201, schema: tokenResponseSchema },
    async handle({ ctx, deps, body }) {
      const tokens = await deps.accounts.register(body);
      keepInCookie(ctx, deps, tokens);
      return tokens;
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/guest',
    summary:
      'Starts a guest session under a display name (normalized: NFC, invisible and bidi characters removed) while guest access is on; send its access token as `Authorization: Bearer`. Guests hold the configured guest grants (join and speak by default), never moderate or stream',
    limit: 'auth',
    body: guestSessionBodySchema,
    errors: { 403: 'Guest access is disabled' },
    success: { status: 201, schema: guestSessionSchema },
    handle({ deps, body }) {
      return deps.accounts.startGuestSession(body.displayName);
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/login',
    summary:
      'Signs in with username and password; the refresh token comes in the body, for clients such as the CLI, and in the hearth_refresh cookie for browsers',
    limit: 'auth',
    body: loginBodySchema,
    errors: {
      401: 'Wrong username or password, or a disabled account',
      429: 'Too many requests, or too many failed logins from this address',
    },
    success: { status: 200, schema: tokenResponseSchema },
    async handle({ ctx, deps, body }) {
      const tokens = await deps.accounts.login(body, ctx.state.client.address);
      keepInCookie(ctx, deps, tokens);
      return tokens;
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/refresh',
    summary:
      'Trades a refresh token (single use) for a new access and refresh token. The token comes from the body, else from the hearth_refresh cookie; a refresh by cookie answers the new refresh token in the cookie only',
    limit: 'auth',
    body: refreshBodySchema,
    bodyOptional: true,
    errors: { 401: 'Unknown, expired, revoked or already used refresh token' },
    success: { status: 200, schema: tokenResponseSchema.partial({ refreshToken: true }) },
    async handle({ ctx, deps, body }) {
      const fromBody = body?.refreshToken;
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
      keepInCookie(ctx, deps, tokens);
      return fromBody !== undefined ? tokens : sessionResponseSchema.parse(tokens);
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/logout',
    summary:
      'Revokes the refresh token (from the body, else the cookie) and every token of its login, and clears the cookie',
    limit: 'auth',
    body: refreshBodySchema,
    bodyOptional: true,
    success: { status: 204 },
    async handle({ ctx, deps, body }) {
      const presented = body?.refreshToken ?? refreshCookieOf(ctx);
      if (presented !== undefined) await deps.accounts.logout(presented);
      clearRefreshCookie(ctx, ctx.state.client.secure);
    },
  }),
  route({
    method: 'get',
    path: '/api/auth/me',
    summary: 'Who the caller is, its role and the grants it holds',
    limit: 'auth',
    auth: {},
    success: { status: 200, schema: meSchema },
    handle({ deps, caller }) {
      return deps.accounts.describe(caller);
    },
  }),
];
