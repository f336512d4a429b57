import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocket } from 'ws';
import {
  channelListSchema,
  channelSchema,
  channelStreamSchema,
  liveStreamSchema,
  type EventNotificationMethod,
} from '@hearth/protocol';
import { PRIVATE_PLAYBACK_TTL_SECONDS } from '../src/streams/stream-service';
import {
  bearer,
  expectError,
  guestSession,
  loginAccount,
  operator,
  registerAccount,
  sendJson,
} from './support/accounts';
import { startTestApi, type TestApi } from './support/server';

const SECRET = 'c0ffee'.repeat(8);
const PLAYBACK_BASE = 'http://127.0.0.1:8081';
const SIGNED_MASTER = new RegExp(
  `^${PLAYBACK_BASE}/live/_s/[A-Za-z0-9_-]{22}/(\\d+)/club/master\\.m3u8$`,
);

async function start(): Promise<TestApi> {
  const api = await startTestApi({
    api: { playbackSigningSecret: SECRET },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1:1935/live', playbackBaseUrl: PLAYBACK_BASE },
  });
  // The first account registered becomes the owner; the accounts of the tests are members.
  await registerAccount(api.baseUrl, 'owner');
  // Registered before the test's own handlers, so it runs after them (they run in reverse).
  onTestFinished(() => api.close(), 30_000);
  return api;
}

/** A private channel `club` and a public channel `lobby`, created by the operator. */
async function createChannels(baseUrl: string): Promise<void> {
  const club = await sendJson(
    `${baseUrl}/api/channels`,
    'POST',
    { name: 'club', private: true },
    operator(),
  );
  expect(club.status).toBe(201);
  expect(channelSchema.parse(await club.json())).toMatchObject({ name: 'club', private: true });
  const lobby = await sendJson(`${baseUrl}/api/channels`, 'POST', { name: 'lobby' }, operator());
  expect(channelSchema.parse(await lobby.json())).toMatchObject({ private: false });
}

/** A registered account, and with `membership` its grants in `club`; resolves with its headers. */
async function account(
  test: TestApi,
  username: string,
  membership?: ('join' | 'speak')[],
): Promise<Record<string, string>> {
  const registered = await registerAccount(test.baseUrl, username);
  if (membership) await test.stores.memberships.set(registered.user.id, 'club', membership);
  return bearer((await loginAccount(test.baseUrl, username)).accessToken);
}

async function listed(baseUrl: string, headers: Record<string, string>): Promise<string[]> {
  const response = await fetch(`${baseUrl}/api/channels`, { headers });
  expect(response.status).toBe(200);
  return channelListSchema.parse(await response.json()).channels.map((channel) => channel.name);
}

/** Starts a stream in `channel` as an ingest node would; resolves with its storage prefix. */
async function goLive(test: TestApi, channel: string): Promise<string> {
  const { streamKey } = await test.streams.createKey(channel);
  const grant = await test.streams.authorizePublish(streamKey, {
    ip: '127.0.0.1',
    nodeId: 'ingest-test',
  });
  await test.streams.report('ingest-test', {
    kind: 'started',
    streamId: grant.streamId,
    renditions: [],
  });
  return grant.storagePrefix;
}

describe('private channels', () => {
  it('a guest and a non-member account get 404 for a private channel and do not see it listed', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    const outsiders = {
      guest: await guestSession(test.baseUrl, 'Gus'),
      stranger: await account(test, 'eve'),
      // Holding something else in the channel is not membership.
      speaker: await account(test, 'sam', ['speak']),
    };

    for (const headers of Object.values(outsiders)) {
      expect(await listed(test.baseUrl, headers)).toEqual(['lobby']);
      await expectError(
        await fetch(`${test.baseUrl}/api/channels/club`, { headers }),
        404,
        'not_found',
      );
      await expectError(
        await fetch(`${test.baseUrl}/api/channels/club/stream`, { headers }),
        404,
        'not_found',
      );
      await expectError(
        await sendJson(`${test.baseUrl}/api/voice/join`, 'POST', { channel: 'club' }, headers),
        404,
        'not_found',
      );
      expect((await fetch(`${test.baseUrl}/api/channels/lobby`, { headers })).status).toBe(200);
    }
  });

  it('a member lists, reads and joins a private channel and gets a signed playback URL valid 6 h', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    const headers = await account(test, 'ada', ['join']);

    expect(await listed(test.baseUrl, headers)).toEqual(['club', 'lobby']);
    const channel = await fetch(`${test.baseUrl}/api/channels/club`, { headers });
    expect(channelSchema.parse(await channel.json())).toMatchObject({ private: true });
    const stream = channelStreamSchema.parse(
      await (await fetch(`${test.baseUrl}/api/channels/club/stream`, { headers })).json(),
    );
    const expires = Number(SIGNED_MASTER.exec(stream.playbackUrl)?.[1]);
    const now = Date.now() / 1000;
    expect(expires).toBeGreaterThanOrEqual(now + PRIVATE_PLAYBACK_TTL_SECONDS);
    expect(expires).toBeLessThan(now + PRIVATE_PLAYBACK_TTL_SECONDS + 601);
    const join = await sendJson(
      `${test.baseUrl}/api/voice/join`,
      'POST',
      { channel: 'club' },
      headers,
    );
    expect(join.status).toBe(200);
    // Public channels keep their plain, cacheable URL.
    const lobby = channelStreamSchema.parse(
      await (await fetch(`${test.baseUrl}/api/channels/lobby/stream`, { headers })).json(),
    );
    expect(lobby.playbackUrl).toBe(`${PLAYBACK_BASE}/live/lobby/master.m3u8`);
  });

  it('the operator and server-wide moderators see private channels without a membership', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    const registered = await registerAccount(test.baseUrl, 'mod');
    await test.stores.memberships.set(registered.user.id, '*', ['join', 'moderate']);
    const moderator = bearer((await loginAccount(test.baseUrl, 'mod')).accessToken);

    for (const headers of [operator(), moderator]) {
      expect(await listed(test.baseUrl, headers)).toEqual(['club', 'lobby']);
      expect((await fetch(`${test.baseUrl}/api/channels/club`, { headers })).status).toBe(200);
    }
  });

  it('a private live stream is stored under private/ and listed with a signed URL to members only', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    expect(await goLive(test, 'club')).toBe('private/club');
    expect(await goLive(test, 'lobby')).toBe('live/lobby');
    const member = await account(test, 'ada', ['join']);
    const stranger = await account(test, 'eve');

    const streamsOf = async (headers: Record<string, string>) => {
      const response = await fetch(`${test.baseUrl}/api/streams`, { headers });
      const body = (await response.json()) as { streams: unknown[] };
      return body.streams.map((stream) => liveStreamSchema.parse(stream));
    };
    const seenByMember = await streamsOf(member);
    const seenByStranger = await streamsOf(stranger);

    expect(seenByMember.map((stream) => stream.channel).sort()).toEqual(['club', 'lobby']);
    expect(seenByMember.find((stream) => stream.channel === 'club')?.playbackUrl).toMatch(
      SIGNED_MASTER,
    );
    expect(seenByStranger.map((stream) => stream.channel)).toEqual(['lobby']);
  });

  it('the events socket tells members of a private stream with a signed URL and others nothing', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    const member = await account(test, 'ada', ['join']);
    const stranger = await account(test, 'eve');
    const wsUrl = test.baseUrl.replace('http', 'ws');
    const memberEvents = await openEvents(`${wsUrl}/ws/events`, member);
    const strangerEvents = await openEvents(`${wsUrl}/ws/events`, stranger);
    const refused = await openEvents(`${wsUrl}/ws/events?channel=club`, stranger);
    // The api's close waits for open sockets, so they close before it, even when the test fails.
    onTestFinished(async () => {
      for (const events of [memberEvents, strangerEvents]) {
        events.socket.close();
        await events.closed;
      }
    });

    await goLive(test, 'club');
    await goLive(test, 'lobby');
    await expect.poll(() => strangerEvents.received.length).toBeGreaterThan(0);
    await expect.poll(() => memberEvents.received.length).toBeGreaterThan(1);

    expect(await refused.closed).toBe(4404);
    const started = (events: Received[]) =>
      events.filter(
        (event) => event.method === ('streamStarted' satisfies EventNotificationMethod),
      );
    expect(started(strangerEvents.received).map((event) => event.data.stream?.channel)).toEqual([
      'lobby',
    ]);
    const memberStarted = started(memberEvents.received);
    expect(memberStarted.map((event) => event.data.stream?.channel)).toEqual(['club', 'lobby']);
    expect(memberStarted[0]?.data.stream?.playbackUrl).toMatch(SIGNED_MASTER);
  });

  it('PATCH /api/channels/:name needs moderate, and making a channel public opens it to everyone', async () => {
    const test = await start();
    await createChannels(test.baseUrl);
    const member = await account(test, 'ada', ['join']);
    const guest = await guestSession(test.baseUrl, 'Gus');

    await expectError(
      await sendJson(`${test.baseUrl}/api/channels/club`, 'PATCH', { private: false }, member),
      403,
      'forbidden',
    );
    await expectError(
      await sendJson(`${test.baseUrl}/api/channels/club`, 'PATCH', { private: 'no' }, operator()),
      400,
      'bad_request',
    );
    const opened = await sendJson(
      `${test.baseUrl}/api/channels/club`,
      'PATCH',
      { private: false },
      operator(),
    );

    expect(channelSchema.parse(await opened.json())).toMatchObject({ private: false });
    expect(await listed(test.baseUrl, guest)).toEqual(['club', 'lobby']);
    const closed = await sendJson(
      `${test.baseUrl}/api/channels/lobby`,
      'PATCH',
      { private: true },
      operator(),
    );
    expect(closed.status).toBe(200);
    expect(await listed(test.baseUrl, guest)).toEqual(['club']);
  });
});

interface Received {
  method: string;
  data: { stream?: { channel: string; playbackUrl: string } };
}

/** Opens the events socket with an account's token and records its notifications. */
async function openEvents(
  url: string,
  headers: Record<string, string>,
): Promise<{ socket: WebSocket; received: Received[]; closed: Promise<number> }> {
  const socket = new WebSocket(url, { headers });
  const received: Received[] = [];
  socket.on('message', (data) => received.push(JSON.parse(String(data)) as Received));
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return { socket, received, closed };
}
