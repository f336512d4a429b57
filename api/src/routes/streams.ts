import {
  channelStreamSchema,
  issuedStreamKeySchema,
  liveStreamListSchema,
  streamKeyDetailsSchema,
  streamKeyListSchema,
} from '@hearth/protocol';
import { holdsGrant } from '../auth';
import { liveOriginFor } from '../streams/live-origin-lookup';
import { route, type Route } from './route';

/** Stream keys and live streams. */
export const streamRoutes: readonly Route[] = [
  route({
    method: 'post',
    path: '/api/channels/:name/stream-key',
    summary: "Issues the channel's stream key; the secret is shown only in this answer",
    auth: { grant: 'stream' },
    success: { status: 201, schema: issuedStreamKeySchema },
    handle: ({ deps, params }) => deps.streams.createKey(params.name!),
  }),
  route({
    method: 'get',
    path: '/api/channels/:name/stream-key',
    summary: "The channel's stream key without its secret, and the OBS server URL",
    auth: { grant: 'stream' },
    success: { status: 200, schema: streamKeyDetailsSchema },
    handle: ({ deps, params }) => deps.streams.keyDetails(params.name!),
  }),
  route({
    method: 'post',
    path: '/api/channels/:name/stream-key/rotate',
    summary: 'Replaces the stream key; a live stream on the old key ends',
    auth: { grant: 'stream' },
    success: { status: 200, schema: issuedStreamKeySchema },
    handle: ({ deps, params }) => deps.streams.rotateKey(params.name!),
  }),
  route({
    method: 'delete',
    path: '/api/channels/:name/stream-key',
    summary: 'Revokes the stream key; a live stream on it ends',
    auth: { grant: 'stream' },
    success: { status: 204 },
    async handle({ deps, params }) {
      await deps.streams.revokeKey(params.name!);
    },
  }),
  route({
    method: 'get',
    path: '/api/stream-keys',
    summary: 'Every stream key, without secrets',
    auth: { grant: 'moderate' },
    success: { status: 200, schema: streamKeyListSchema },
    handle: async ({ deps }) => ({ keys: await deps.streams.listKeys() }),
  }),
  // Streams of private channels are listed, with signed playback URLs, only to those who may
  // access the channel.
  route({
    method: 'get',
    path: '/api/streams',
    summary: 'Live streams with state, renditions, playback URL and viewers',
    auth: { grant: 'join' },
    success: { status: 200, schema: liveStreamListSchema },
    async handle({ deps, caller }) {
      const live = await deps.streams.liveStreams();
      const channels = new Map(
        (await deps.channels.list()).map((record) => [record.name, record] as const),
      );
      const visible = new Set(
        (await deps.access.filter(caller, [...channels.values()])).map((record) => record.name),
      );
      return {
        streams: live.flatMap((stream) => {
          const channel = channels.get(stream.channel);
          if (!channel) return [stream];
          return visible.has(channel.name) ? [deps.streams.withPlaybackUrl(stream, channel)] : [];
        }),
      };
    },
  }),
  route({
    method: 'get',
    path: '/api/channels/:name/stream',
    summary: "The channel's current stream, or null when offline",
    auth: { grant: 'join' },
    success: { status: 200, schema: channelStreamSchema },
    async handle({ deps, params, caller }) {
      const name = params.name!;
      // A channel not created yet is public; a private one is `not_found` to outsiders.
      const channel = await deps.access.ifExists(caller, name);
      const [stream, participants] = await Promise.all([
        deps.streams.channelStream(channel ?? { name, private: false }),
        deps.presence.list(name),
      ]);
      const sharer = participants.find((participant) => participant.sharing);
      const { broadcastShare, moveWebrtc, ...status } = stream;
      // Moderators keep watching over WebRTC: they act on what they see as it happens.
      const staysOnWebrtc = holdsGrant(caller, 'moderate', name);
      return {
        ...status,
        share: sharer
          ? {
              peerId: sharer.id,
              displayName: sharer.displayName,
              broadcast: broadcastShare === sharer.id && !staysOnWebrtc,
              moveWebrtc: broadcastShare === sharer.id && !staysOnWebrtc && moveWebrtc,
            }
          : null,
      };
    },
  }),
  route({
    method: 'get',
    path: '/api/edge/live-origin/:channel',
    summary:
      "For the CDN edge (header X-Hearth-Edge-Secret, API_EDGE_SECRET): the ingest node serving the channel's live stream as LL-HLS origin, as host:port in X-Hearth-Live-Origin; 403 when none does (the edge reads S3 then) or the secret is wrong",
    limit: 'none',
    errors: { 403: 'No live origin for the channel, or not the edge' },
    success: { status: 204 },
    async handle({ ctx, deps, params }) {
      ctx.set('X-Hearth-Live-Origin', await liveOriginFor(ctx, deps, params.channel!));
    },
  }),
];
