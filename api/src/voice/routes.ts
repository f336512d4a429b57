import { randomUUID } from 'node:crypto';
import type Router from '@koa/router';
import type Koa from 'koa';
import {
  displayNameSkeleton,
  voiceJoinBodySchema,
  type RtpCapabilities,
  type VoiceJoin,
} from '@hearth/protocol';
import { AppError, type JoinTokenIssuer } from '@hearth/server-common';
import { holdsGrant, identityIn, type Principal } from '../auth';
import type { ChannelAccess } from '../channel-access';
import type { ChannelDirectory } from '../channel-directory';
import type { ModerationStore } from '../db/moderation';
import type { SessionHistory } from '../db/session-history';
import type { JoinReservations } from './reservations';
import type { PresenceStore } from './presence';
import { callerOf, rateLimit, validateBody, type ApiState } from '../middleware';
import type { PlacementService } from '../nodes/placement-service';

/** Path of the signaling WebSocket of a voice node running inside the api process. */
export const EMBEDDED_SIGNALING_PATH = '/ws/voice';

/** What the voice routes need. */
export interface VoiceRouteDeps {
  /** Places channels and participants on nodes. */
  placement: PlacementService;
  /** Signs the single-use tokens nodes admit clients with. */
  joinTokens: JoinTokenIssuer;
  /** Bans and lasting server mutes. */
  moderation: ModerationStore;
  /** Who is in each channel, to keep guests from posing as its members. */
  presence: PresenceStore;
  /** Open voice sessions, counted per identity. */
  sessions: SessionHistory;
  /** Seats held by tokens not admitted yet, capped per identity. */
  reservations: JoinReservations;
  /** Per-identity caps; the operator, the owner and admins are exempt. */
  limits: { maxPendingJoins: number; maxVoiceSessions: number };
  /** Channel records. */
  channels: ChannelDirectory;
  /** Who may join private channels. */
  access: ChannelAccess;
  /** Router capabilities, from the in-process node or the first node that registered. */
  rtpCapabilities: () => RtpCapabilities | undefined;
  /** Joins allowed per client address and second (burst of twice that). */
  joinRatePerSecond: number;
}

/** Adds `GET /api/voice/capabilities` and `POST /api/voice/join`. */
export function registerVoiceRoutes(
  router: Router<ApiState>,
  deps: VoiceRouteDeps,
  middleware: { limit: Koa.Middleware; signedIn: Koa.Middleware },
): void {
  const joinLimit = rateLimit(deps.joinRatePerSecond);
  const knownChannels = new ChannelExistenceCache(deps.channels);

  // Public and the same on every node: clients load their Device from it while the user is still
  // on the join form, so joining skips that step.
  router.get('/api/voice/capabilities', middleware.limit, (ctx) => {
    const rtpCapabilities = deps.rtpCapabilities();
    if (!rtpCapabilities) throw new AppError('unavailable', 'no voice node has registered yet');
    ctx.body = { rtpCapabilities };
  });

  // Checks the caller's grants in the channel, places it on a node and hands out a token that
  // node admits. Clients call it again after losing a node, naming it in `avoid`.
  router.post(
    '/api/voice/join',
    joinLimit,
    middleware.signedIn,
    validateBody(voiceJoinBodySchema),
    async (ctx) => {
      const { channel, avoid } = voiceJoinBodySchema.parse(ctx.state.body);
      const principal = callerOf(ctx);
      const identity = identityIn(principal, channel);
      if (!identity.grants.has('join')) {
        throw new AppError('forbidden', `missing the "join" grant in channel ${channel}`);
      }
      if (!(await knownChannels.exists(channel))) {
        // Only those who may create channels open one by joining it; a typo opens nothing.
        if (!holdsGrant(principal, 'moderate')) {
          throw new AppError('not_found', `no channel ${channel}`);
        }
        await deps.channels.ensure(channel);
      }
      // A private channel answers non-members as if it did not exist.
      await deps.access.require(principal, channel);
      const ban = await deps.moderation.banOf(channel, principal.userId);
      if (ban) {
        throw new AppError(
          'forbidden',
          ban.scope === channel
            ? `you are banned from ${channel}`
            : 'you are banned from this server',
        );
      }
      if (principal.guest) await refuseLookAlike(deps.presence, channel, principal);
      if (
        !principal.admin &&
        (await deps.sessions.openSessionCount(principal.userId)) >= deps.limits.maxVoiceSessions
      ) {
        throw new AppError(
          'rate_limited',
          `you are in ${deps.limits.maxVoiceSessions} voice sessions already; leave one first`,
        );
      }
      const serverMuted = await deps.moderation.isServerMuted(channel, principal.userId);
      const placement = await deps.placement.placeParticipant(channel, { avoid });
      const tokenId = randomUUID();
      const held = await deps.reservations.hold({
        id: tokenId,
        identity: principal.userId,
        nodeId: placement.nodeId,
        expiresAt: Date.now() + deps.joinTokens.ttlSeconds * 1000,
        max: principal.admin ? Number.MAX_SAFE_INTEGER : deps.limits.maxPendingJoins,
      });
      if (!held) {
        await deps.placement.releaseSeat(placement.nodeId);
        throw new AppError(
          'rate_limited',
          'too many joins waiting to connect; use one or wait for it to expire',
        );
      }
      const issued = deps.joinTokens.sign(
        {
          sub: identity.userId,
          name: identity.displayName,
          guest: identity.guest,
          channel,
          node: placement.nodeId,
          grants: [...identity.grants],
          core: placement.assignment.core,
          rank: identity.rank ?? 0,
          serverMuted,
        },
        tokenId,
      );
      const body: VoiceJoin = {
        nodeId: placement.nodeId,
        url: placement.node.signalingUrl ?? EMBEDDED_SIGNALING_PATH,
        token: issued.token,
        expiresIn: deps.joinTokens.ttlSeconds,
      };
      ctx.body = body;
    },
  );
}

// A guest may not join under a name that reads like a member's in the same channel.
async function refuseLookAlike(
  presence: PresenceStore,
  channel: string,
  guest: Principal,
): Promise<void> {
  const skeleton = displayNameSkeleton(guest.displayName);
  const participants = await presence.list(channel);
  if (participants.some((p) => !p.guest && displayNameSkeleton(p.displayName) === skeleton)) {
    throw new AppError(
      'conflict',
      `a member of ${channel} is called "${guest.displayName}" or alike; pick another name`,
    );
  }
}

// Joins are the hottest path of the api, and nearly all of them go to channels that exist. A
// channel seen to exist is taken as existing for a few seconds without asking the database again;
// a channel deleted meanwhile is closed on its nodes anyway, so a join in that window finds it gone.
const CHANNEL_EXISTS_TTL_MS = 5000;

class ChannelExistenceCache {
  readonly #channels: ChannelDirectory;
  readonly #seen = new Map<string, number>();

  constructor(channels: ChannelDirectory) {
    this.#channels = channels;
  }

  async exists(channel: string): Promise<boolean> {
    const now = performance.now();
    const seenAt = this.#seen.get(channel);
    if (seenAt !== undefined && now - seenAt < CHANNEL_EXISTS_TTL_MS) return true;
    const exists = (await this.#channels.get(channel)) !== undefined;
    // Bounded memory: forgetting every entry only costs one lookup each.
    if (this.#seen.size > 10_000) this.#seen.clear();
    if (exists) this.#seen.set(channel, now);
    else this.#seen.delete(channel);
    return exists;
  }
}
