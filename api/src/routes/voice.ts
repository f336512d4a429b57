import { randomUUID } from 'node:crypto';
import {
  displayNameSkeleton,
  voiceCapabilitiesSchema,
  voiceJoinBodySchema,
  voiceJoinSchema,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { holdsGrant, identityIn, type Principal } from '../auth';
import { turnSettingsOf } from '../turn/config';
import { iceServersFor } from '../turn/credentials';
import type { PresenceStore } from '../voice/presence';
import { route, type Route } from './route';

/** Path of the signaling WebSocket of a voice node running inside the api process. */
export const EMBEDDED_SIGNALING_PATH = '/ws/voice';

/** `GET /api/voice/capabilities` and `POST /api/voice/join`. */
export const voiceRoutes: readonly Route[] = [
  // Public and the same on every node: clients load their Device from it while the user is still
  // on the join form, so joining skips that step.
  route({
    method: 'get',
    path: '/api/voice/capabilities',
    summary: 'RTP capabilities a voice client loads before joining',
    errors: { 503: 'No voice node has registered yet' },
    success: { status: 200, schema: voiceCapabilitiesSchema },
    handle({ deps }) {
      const rtpCapabilities = deps.voice?.routerRtpCapabilities ?? deps.nodeHub.rtpCapabilities;
      if (!rtpCapabilities) throw new AppError('unavailable', 'no voice node has registered yet');
      return { rtpCapabilities };
    },
  }),
  // Checks the caller's grants, bans and caps in the channel, places it on a node and hands out a
  // single-use token that node admits. Clients call it again after losing a node, naming it in
  // `avoid`, and for every reconnect.
  route({
    method: 'post',
    path: '/api/voice/join',
    summary:
      'Places the caller in a channel on a voice node, or as a spectator of its screen shares (`spectate`), and returns its signaling URL with a single-use join token and TURN servers with time-limited credentials (needs join in the channel)',
    limit: 'join',
    auth: {},
    body: voiceJoinBodySchema,
    errors: {
      403: 'Missing the "join" grant in the channel, or banned from it',
      404: 'No such channel (only those who may create channels open one by joining)',
      409: "A guest's name reads like a member's in the channel",
      429: 'Too many joins, joins waiting to connect, or voice sessions',
      503: 'No voice node has room',
    },
    success: { status: 200, schema: voiceJoinSchema },
    async handle({ deps, body, caller }) {
      const { channel, avoid, spectate } = body;
      const identity = identityIn(caller, channel);
      if (!identity.grants.has('join')) {
        throw new AppError('forbidden', `missing the "join" grant in channel ${channel}`);
      }
      let record = await deps.channelRecords.get(channel);
      if (!record) {
        // Only those who may create channels open one by joining it; a typo opens nothing.
        if (!holdsGrant(caller, 'moderate')) {
          throw new AppError('not_found', `no channel ${channel}`);
        }
        record = await deps.channels.ensure(channel);
      }
      // A private channel answers non-members as if it did not exist.
      if (!(await deps.access.allows(caller, record))) {
        throw new AppError('not_found', `no channel ${channel}`);
      }
      const { ban, serverMuted, openSessions } = await deps.moderation.joinStanding(
        channel,
        caller.userId,
      );
      if (ban) {
        throw new AppError(
          'forbidden',
          ban.scope === channel
            ? `you are banned from ${channel}`
            : 'you are banned from this server',
        );
      }
      // Spectators are in no roster, so their names cannot pass for anyone's there.
      if (caller.guest && !spectate) await refuseLookAlike(deps.presence, channel, caller);
      const { maxVoiceSessions, maxPendingJoins } = deps.config;
      if (!caller.admin && openSessions >= maxVoiceSessions) {
        throw new AppError(
          'rate_limited',
          `you are in ${maxVoiceSessions} voice sessions already; leave one first`,
        );
      }
      const placement = await deps.placement.placeParticipant(channel, { avoid });
      const tokenId = randomUUID();
      const held = await deps.reservations.hold({
        id: tokenId,
        identity: caller.userId,
        nodeId: placement.nodeId,
        expiresAt: Date.now() + deps.joinTokens.ttlSeconds * 1000,
        max: caller.admin ? Number.MAX_SAFE_INTEGER : maxPendingJoins,
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
          spectator: spectate,
          maxSharePreset: record.maxSharePreset,
        },
        tokenId,
      );
      return {
        nodeId: placement.nodeId,
        url: placement.node.signalingUrl ?? EMBEDDED_SIGNALING_PATH,
        token: issued.token,
        expiresIn: deps.joinTokens.ttlSeconds,
        // Fresh TURN credentials with every join, so a reconnect never carries expired ones.
        iceServers: iceServersFor(turnSettingsOf(deps.config), identity.userId),
      };
    },
  }),
];

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
