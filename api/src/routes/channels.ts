import {
  RANKS,
  channelListSchema,
  channelSchema,
  createChannelBodySchema,
  pageQuerySchema,
  shareRoutingBodySchema,
  updateChannelBodySchema,
  type Channel,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { accountIdOf, rankIn } from '../auth';
import type { ChannelRecord } from '../channel-directory';
import type { PresenceStore } from '../voice/presence';
import { route, type Route } from './route';

// Participants are what the nodes report, so the list covers every node of a channel.
async function describeChannel(record: ChannelRecord, presence: PresenceStore): Promise<Channel> {
  return {
    name: record.name,
    createdAt: record.createdAt.toISOString(),
    private: record.private,
    maxSharePreset: record.maxSharePreset,
    shareRouting: record.shareRouting,
    participants: await presence.list(record.name),
  };
}

/** Listing, reading, creating, changing and deleting channels. */
export const channelRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/channels',
    summary:
      'Channels with their live participants, oldest first, a page at a time (`limit` up to 500, 100 by default; `offset`); private channels only to those who may access them',
    auth: { grant: 'join' },
    query: pageQuerySchema,
    success: { status: 200, schema: channelListSchema },
    async handle({ deps, caller, query }) {
      const records = await deps.channels.list(query);
      const visible = await deps.access.filter(caller, records);
      return {
        channels: await Promise.all(
          visible.map((record) => describeChannel(record, deps.presence)),
        ),
        nextOffset: records.length === query.limit ? query.offset + query.limit : null,
      };
    },
  }),
  route({
    method: 'get',
    path: '/api/channels/:name',
    summary: 'One channel',
    auth: { grant: 'join' },
    errors: { 404: 'No such channel, or a private one the caller may not access' },
    success: { status: 200, schema: channelSchema },
    async handle({ deps, params, caller }) {
      const record = await deps.access.require(caller, params.name!);
      return describeChannel(record, deps.presence);
    },
  }),
  // Moderators of a channel make it private (members only) or public again, and cap its screen
  // shares. A live stream restarts when privacy changes, since its storage prefix decides which
  // edge path serves it. A new share cap holds for joins from then on.
  route({
    method: 'patch',
    path: '/api/channels/:name',
    summary:
      "Changes a channel's settings: private (members only; a live stream restarts) and the heaviest screen-share preset (for joins from then on)",
    auth: { grant: 'moderate' },
    body: updateChannelBodySchema,
    errors: { 404: 'No such channel' },
    success: { status: 200, schema: channelSchema },
    async handle({ deps, params, body, caller }) {
      const before = await deps.access.require(caller, params.name!);
      const record = await deps.channels.update(before.name, body);
      deps.channelRecords.forget(record.name);
      if (before.private !== record.private) await deps.streams.restartLiveStream(record.name);
      return describeChannel(record, deps.presence);
    },
  }),
  // An operator's override of the handoff policy for a channel's screen shares: server-wide,
  // since it decides what the voice nodes and the ingest nodes carry.
  route({
    method: 'put',
    path: '/api/channels/:name/share-routing',
    summary:
      "Routes the audience of a channel's screen shares: auto (the handoff policy), webrtc (never to HLS) or broadcast (to HLS now); server-wide moderators and the operator token only",
    auth: { grant: 'moderate', serverWide: true, accountsOnly: true },
    body: shareRoutingBodySchema,
    errors: { 404: 'No such channel' },
    success: { status: 200, schema: channelSchema },
    async handle({ deps, params, body, caller }) {
      const before = await deps.access.require(caller, params.name!);
      const record = await deps.channels.update(before.name, { shareRouting: body.routing });
      deps.channelRecords.forget(record.name);
      await deps.bridges.routingChanged(record.name);
      return describeChannel(record, deps.presence);
    },
  }),
  route({
    method: 'post',
    path: '/api/channels',
    summary:
      'Creates a channel, public unless `private` is true; below admin, each identity creates at most API_CHANNELS_PER_HOUR an hour',
    auth: { grant: 'moderate' },
    body: createChannelBodySchema,
    errors: { 409: 'The name is taken', 429: 'Too many channels created this hour' },
    success: { status: 201, schema: channelSchema },
    async handle({ deps, body, caller }) {
      if (rankIn(caller) < RANKS.admin && !deps.channelCreations.take(caller.userId)) {
        throw new AppError(
          'rate_limited',
          `you may create ${deps.config.channelsPerHour} channels an hour; try again later`,
        );
      }
      const record = await deps.channels.create(body.name, accountIdOf(caller), {
        private: body.private,
      });
      return describeChannel(record, deps.presence);
    },
  }),
  route({
    method: 'delete',
    path: '/api/channels/:name',
    summary: 'Deletes a channel and closes it live',
    auth: { grant: 'moderate' },
    errors: { 404: 'No such channel' },
    success: { status: 204 },
    async handle({ deps, params, caller }) {
      const { name } = await deps.access.require(caller, params.name!);
      // A deleted channel keeps no way to go live: its key goes first, which ends a live stream
      // (deleting the channel would drop the key row without telling anyone).
      await deps.streams.revokeKey(name).catch((error: unknown) => {
        if (!(error instanceof AppError && error.code === 'not_found')) throw error;
      });
      await deps.channels.delete(name);
      deps.channelRecords.forget(name);
      await deps.nodeHub.closeChannel(name, 'deleted');
      await deps.placement.release(name);
    },
  }),
];
