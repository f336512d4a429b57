import type Router from '@koa/router';
import {
  loginBodySchema,
  refreshBodySchema,
  registerBodySchema,
  type LoginBody,
  type RefreshBody,
  type RegisterBody,
} from '@hearth/protocol';
import type { AppDeps } from '../app';
import { authenticate, callerOf, rateLimit, validateBody, type ApiState } from '../middleware';

/**
 * Adds the account routes under `/api/auth`. They have their own, stricter rate limit per client
 * address, on top of the login throttle (failures per address, delays per username).
 */
export function registerAuthRoutes(router: Router<ApiState>, deps: AppDeps): void {
  const limit = rateLimit(deps.config.authRatePerSecond);

  router.post('/api/auth/register', limit, validateBody(registerBodySchema), async (ctx) => {
    ctx.status = 201;
    ctx.body = await deps.accounts.register(ctx.state.body as RegisterBody);
  });

  router.post('/api/auth/login', limit, validateBody(loginBodySchema), async (ctx) => {
    ctx.body = await deps.accounts.login(ctx.state.body as LoginBody, ctx.state.client.address);
  });

  router.post('/api/auth/refresh', limit, validateBody(refreshBodySchema), async (ctx) => {
    ctx.body = await deps.accounts.refresh((ctx.state.body as RefreshBody).refreshToken);
  });

  router.post('/api/auth/logout', limit, validateBody(refreshBodySchema), async (ctx) => {
    await deps.accounts.logout((ctx.state.body as RefreshBody).refreshToken);
    ctx.status = 204;
  });

  router.get('/api/auth/me', limit, authenticate(deps.authenticator), async (ctx) => {
    ctx.body = await deps.accounts.describe(callerOf(ctx));
  });
}
