import {
  SERVER_WIDE,
  banBodySchema,
  banListSchema,
  channelLinksSchema,
  compareLinksWorstFirst,
  describeZodError,
  grantScopeSchema,
  pageQuerySchema,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { holdsGrant, rankIn, type Principal } from '../auth';
import { route, type Route, type RouteDeps } from './route';

// An account's rank in a channel from the database (its token may be older); guests rank lowest.
async function targetRank(deps: RouteDeps, userId: string, channel: string): Promise<number> {
  const user = await deps.users.byId(userId);
  if (!user) return 0;
  return rankIn(await deps.accounts.principalOf(user), channel);
}

// The peer a moderator names, resolved to who holds it, and checked against the actor's rank.
async function targetOf(deps: RouteDeps, caller: Principal, channel: string, peerId: string) {
  const holder = await deps.sessions.openSessionOf(channel, peerId);
  if (!holder) throw new AppError('not_found', `no participant ${peerId} in ${channel}`);
  if ((await targetRank(deps, holder.userId, channel)) >= rankIn(caller, channel)) {
    throw new AppError('forbidden', 'you cannot act on someone of your rank or above');
  }
  return holder;
}

/**
 * Kicking and banning a channel's participants (applied to their live sessions at once, on every
 * node), listing and lifting bans, and each participant's link quality. A moderator acts only on
 * those ranked below it.
 */
export const moderationRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/channels/:name/links',
    summary:
      "Each participant's link as its voice node last judged it (quality, loss, jitter, round trip, bitrate), worst first; participants who have not reported yet are left out",
    auth: { grant: 'moderate' },
    success: { status: 200, schema: channelLinksSchema },
    async handle({ deps, params }) {
      const channel = params.name!;
      const [participants, links] = await Promise.all([
        deps.presence.list(channel),
        deps.presence.links(channel),
      ]);
      const present = new Set(participants.map((participant) => participant.id));
      return {
        channel,
        links: links.filter((link) => present.has(link.peerId)).sort(compareLinksWorstFirst),
      };
    },
  }),
  route({
    method: 'post',
    path: '/api/channels/:name/participants/:peerId/kick',
    summary:
      "Disconnects a participant's user from the channel on every node; only someone ranked below the caller",
    auth: { grant: 'moderate' },
    errors: { 404: 'No such participant in the channel' },
    success: { status: 204 },
    async handle({ ctx, deps, params, caller }) {
      const channel = params.name!;
      const target = await targetOf(deps, caller, channel, params.peerId!);
      await deps.nodeHub.removeUser(channel, target.userId, 'kicked', 'a moderator removed you');
      ctx.state.logger.info({ channel, user: target.userId }, 'participant kicked');
    },
  }),
  route({
    method: 'post',
    path: '/api/channels/:name/participants/:peerId/ban',
    summary:
      "Bans a participant's user from the channel, or from every channel with `serverWide` (needs moderate server-wide), and disconnects it; only someone ranked below the caller",
    auth: { grant: 'moderate' },
    body: banBodySchema,
    errors: { 404: 'No such participant in the channel' },
    success: { status: 204 },
    async handle({ ctx, deps, params, body, caller }) {
      const channel = params.name!;
      if (body.serverWide && !holdsGrant(caller, 'moderate')) {
        throw new AppError('forbidden', 'a server-wide ban needs "moderate" in every channel');
      }
      const target = await targetOf(deps, caller, channel, params.peerId!);
      const scope = body.serverWide ? SERVER_WIDE : channel;
      await deps.moderation.ban({
        scope,
        userId: target.userId,
        displayName: target.displayName,
        bannedBy: caller.userId,
      });
      await deps.nodeHub.removeUser(scope, target.userId, 'banned', 'a moderator banned you');
      ctx.state.logger.info({ scope, user: target.userId }, 'participant banned');
    },
  }),
  route({
    method: 'get',
    path: '/api/bans',
    summary: 'Bans, newest first, a page at a time (`limit` up to 500, 100 by default; `offset`)',
    auth: { grant: 'moderate' },
    query: pageQuerySchema,
    success: { status: 200, schema: banListSchema },
    handle: async ({ deps, query }) => ({ bans: await deps.moderation.bans(query) }),
  }),
  route({
    method: 'delete',
    path: '/api/bans/:scope/:userId',
    summary: 'Lifts a ban (needs moderate in its channel, or server-wide for *)',
    auth: {},
    errors: {
      403: 'Missing the "moderate" grant in the ban\'s channel, or server-wide for *',
      404: 'No such ban',
    },
    success: { status: 204 },
    async handle({ deps, params, caller }) {
      const scope = grantScopeSchema.safeParse(params.scope);
      if (!scope.success) {
        throw new AppError('bad_request', `invalid scope: ${describeZodError(scope.error)}`);
      }
      if (!holdsGrant(caller, 'moderate', scope.data)) {
        throw new AppError('forbidden', `missing the "moderate" grant in ${scope.data}`);
      }
      if (!(await deps.moderation.unban(scope.data, params.userId!))) {
        throw new AppError('not_found', 'no such ban');
      }
    },
  }),
];
