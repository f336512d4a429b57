import type Router from '@koa/router';
import type Koa from 'koa';
import { z } from 'zod';
import {
  SERVER_WIDE,
  banBodySchema,
  describeZodError,
  grantScopeSchema,
  type BanBody,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import type { AppDeps } from '../app';
import { holdsGrant, rankIn, type Principal } from '../auth';
import {
  callerOf,
  channelParam,
  requireGrant,
  requireServerGrant,
  validateBody,
  type ApiState,
} from '../middleware';

const pageSchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/**
 * Adds the moderation routes: kicking and banning a channel's participants (applied to their live
 * sessions at once, on every node), and listing and lifting bans. A moderator acts only on those
 * ranked below it.
 */
export function registerModerationRoutes(
  router: Router<ApiState>,
  deps: AppDeps,
  middleware: { limit: Koa.Middleware; signedIn: Koa.Middleware },
): void {
  const channelModerator = [
    middleware.limit,
    middleware.signedIn,
    channelParam(),
    requireGrant('moderate'),
  ];

  // The peer a moderator names, resolved to who holds it, and checked against the actor's rank.
  const targetOf = async (caller: Principal, channel: string, peerId: string | undefined) => {
    const holder = await deps.sessions.openSessionOf(channel, peerId ?? '');
    if (!holder) throw new AppError('not_found', `no participant ${peerId} in ${channel}`);
    if ((await targetRank(deps, holder.userId, channel)) >= rankIn(caller, channel)) {
      throw new AppError('forbidden', 'you cannot act on someone of your rank or above');
    }
    return holder;
  };

  router.post('/api/channels/:name/participants/:peerId/kick', ...channelModerator, async (ctx) => {
    const channel = ctx.params.name!;
    const target = await targetOf(callerOf(ctx), channel, ctx.params.peerId);
    await deps.nodeHub.removeUser(channel, target.userId, 'kicked', 'a moderator removed you');
    ctx.state.logger.info({ channel, user: target.userId }, 'participant kicked');
    ctx.status = 204;
  });

  router.post(
    '/api/channels/:name/participants/:peerId/ban',
    ...channelModerator,
    validateBody(banBodySchema),
    async (ctx) => {
      const caller = callerOf(ctx);
      const channel = ctx.params.name!;
      const { serverWide } = banBodySchema.parse(ctx.state.body as BanBody);
      if (serverWide && !holdsGrant(caller, 'moderate')) {
        throw new AppError('forbidden', 'a server-wide ban needs "moderate" in every channel');
      }
      const target = await targetOf(caller, channel, ctx.params.peerId);
      const scope = serverWide ? SERVER_WIDE : channel;
      await deps.moderation.ban({
        scope,
        userId: target.userId,
        displayName: target.displayName,
        bannedBy: caller.userId,
      });
      await deps.nodeHub.removeUser(scope, target.userId, 'banned', 'a moderator banned you');
      ctx.state.logger.info({ scope, user: target.userId }, 'participant banned');
      ctx.status = 204;
    },
  );

  router.get(
    '/api/bans',
    middleware.limit,
    middleware.signedIn,
    requireServerGrant('moderate'),
    async (ctx) => {
      const page = pageSchema.safeParse(ctx.query);
      if (!page.success) {
        throw new AppError('bad_request', `invalid page: ${describeZodError(page.error)}`);
      }
      ctx.body = { bans: await deps.moderation.bans(page.data) };
    },
  );

  router.delete('/api/bans/:scope/:userId', middleware.limit, middleware.signedIn, async (ctx) => {
    const scope = grantScopeSchema.safeParse(ctx.params.scope);
    if (!scope.success) {
      throw new AppError('bad_request', `invalid scope: ${describeZodError(scope.error)}`);
    }
    if (!holdsGrant(callerOf(ctx), 'moderate', scope.data)) {
      throw new AppError('forbidden', `missing the "moderate" grant in ${scope.data}`);
    }
    if (!(await deps.moderation.unban(scope.data, ctx.params.userId ?? ''))) {
      throw new AppError('not_found', 'no such ban');
    }
    ctx.status = 204;
  });
}

// An account's rank in a channel from the database (its token may be older); guests rank lowest.
async function targetRank(deps: AppDeps, userId: string, channel: string): Promise<number> {
  const user = await deps.users.byId(userId);
  if (!user) return 0;
  return rankIn(await deps.accounts.principalOf(user), channel);
}
