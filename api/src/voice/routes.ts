import type Router from '@koa/router';
import type Koa from 'koa';
import { voiceJoinBodySchema, type RtpCapabilities, type VoiceJoin } from '@hearth/protocol';
import { AppError, type JoinTokens } from '@hearth/server-common';
import { holdsGrant, identityIn } from '../auth';
import type { ChannelDirectory } from '../channel-directory';
import { callerOf, rateLimit, validateBody, type ApiState } from '../middleware';
import type { PlacementService } from '../nodes/placement-service';

/** Path of the signaling WebSocket of a voice node running inside the api process. */
export const EMBEDDED_SIGNALING_PATH = '/ws/voice';

/** What the voice routes need. */
export interface VoiceRouteDeps {
  /** Places channels and participants on nodes. */
  placement: PlacementService;
  /** Signs the tokens nodes admit clients with. */
  joinTokens: JoinTokens;
  /** Lifetime of those tokens, in seconds. */
  joinTokenTtlSeconds: number;
  /** Channel records. */
  channels: ChannelDirectory;
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
        // Guests and moderators may open a channel by joining it, which is how the autojoin link
        // works; anyone else needs it to exist.
        if (!principal.guest && !holdsGrant(principal, 'moderate')) {
          throw new AppError('not_found', `no channel ${channel}`);
        }
        await deps.channels.ensure(channel);
      }
      const placement = await deps.placement.placeParticipant(channel, { avoid });
      const token = await deps.joinTokens.sign({
        sub: identity.userId,
        name: identity.displayName,
        guest: identity.guest,
        channel,
        node: placement.nodeId,
        grants: [...identity.grants],
        core: placement.assignment.core,
      });
      const body: VoiceJoin = {
        nodeId: placement.nodeId,
        url: placement.node.signalingUrl ?? EMBEDDED_SIGNALING_PATH,
        token,
        expiresIn: deps.joinTokenTtlSeconds,
      };
      ctx.body = body;
    },
  );
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
