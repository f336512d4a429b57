import { afterEach, describe, expect, it } from 'vitest';
import { meSchema, voiceJoinSchema } from '@hearth/protocol';
import { apiConfig } from '../src/config';
import {
  TEST_PASSWORD,
  bearer,
  ensureChannel,
  expectError,
  guestSession,
  loginAccount,
  operator,
  registerAccount,
  sendJson,
} from './support/accounts';
import { TestSignalingClient, startTestApi, type TestApi } from './support/server';

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function start(overrides: Parameters<typeof apiConfig>[0] = {}): Promise<string> {
  api = await startTestApi({ api: overrides });
  return api.baseUrl;
}

async function me(baseUrl: string, headers: Record<string, string>) {
  return meSchema.parse(await (await fetch(`${baseUrl}/api/auth/me`, { headers })).json());
}

async function join(baseUrl: string, channel: string, headers: Record<string, string>) {
  return sendJson(`${baseUrl}/api/voice/join`, 'POST', { channel }, headers);
}

describe('guests', () => {
  it.each([['embedded'], ['production']] as const)(
    'in the %s profile a guest may join and speak, and nothing a moderator or streamer may do',
    async (profile) => {
      const baseUrl = await start({ profile, guestAccess: 'true', embeddedVoice: 'true' });
      await ensureChannel(baseUrl, 'lobby');
      const headers = await guestSession(baseUrl, 'Gus');
      expect(await me(baseUrl, headers)).toMatchObject({
        guest: true,
        role: 'guest',
        serverGrants: ['join', 'speak'],
      });
      const refused = [
        await sendJson(`${baseUrl}/api/channels`, 'POST', { name: 'mine' }, headers),
        await fetch(`${baseUrl}/api/channels/lobby`, { method: 'DELETE', headers }),
        await fetch(`${baseUrl}/api/channels/lobby/stream-key`, { method: 'POST', headers }),
        await fetch(`${baseUrl}/api/nodes`, { headers }),
        await fetch(`${baseUrl}/api/stream-keys`, { headers }),
      ];
      expect(refused.map((response) => response.status)).toEqual([403, 403, 403, 403, 403]);
      expect((await join(baseUrl, 'lobby', headers)).status).toBe(200);
    },
  );

  it('the configuration refuses guest grants beyond join, speak and screen-share', () => {
    expect(() => apiConfig({ guestGrants: 'join,moderate' })).toThrow(/never moderate or stream/);
    expect(() => apiConfig({ guestGrants: 'join,stream' })).toThrow(/never moderate or stream/);
    expect(apiConfig({ guestGrants: 'join,speak,screen-share' }).guestGrants).toContain(
      'screen-share',
    );
  });

  it('accounts hold at least what guests hold', () => {
    const config = apiConfig({ guestGrants: 'join,speak,screen-share', userGrants: 'join' });
    expect(config.userGrants).toEqual(expect.arrayContaining(['join', 'speak', 'screen-share']));
  });

  it('a voice URL with a typo creates no channel for a guest: 404, and the channel stays absent', async () => {
    const baseUrl = await start();
    const headers = await guestSession(baseUrl, 'Gus');
    await expectError(await join(baseUrl, 'lobyy', headers), 404, 'not_found');
    expect((await fetch(`${baseUrl}/api/channels/lobyy`, { headers })).status).toBe(404);
    expect((await join(baseUrl, 'fresh', operator())).status).toBe(200);
  });

  it('a guest cannot join under a look-alike of a member in the channel', async () => {
    const baseUrl = await start();
    await ensureChannel(baseUrl, 'lobby');
    const alice = await registerAccount(baseUrl, 'alice', { displayName: 'Alice' });
    const member = await TestSignalingClient.connect(baseUrl, 'Alice', {
      auth: bearer(alice.accessToken),
    });
    await member.request('join', { channel: 'lobby', rtpCapabilities: {} }).catch(() => undefined);
    await waitUntil(async () => {
      const channel = (await (
        await fetch(`${baseUrl}/api/channels/lobby`, { headers: operator() })
      ).json()) as { participants: { displayName: string; guest: boolean }[] };
      return channel.participants.some((p) => p.displayName === 'Alice' && !p.guest);
    });
    for (const name of ['Аlice', 'alice', 'A1ice', 'Al\u200Bice']) {
      const impostor = await guestSession(baseUrl, name);
      await expectError(await join(baseUrl, 'lobby', impostor), 409, 'conflict');
    }
    expect((await join(baseUrl, 'lobby', await guestSession(baseUrl, 'Bob'))).status).toBe(200);
    member.close();
  });
});

describe('accounts and roles', () => {
  it('the first account registered becomes the owner; later ones are members', async () => {
    const baseUrl = await start();
    const first = await registerAccount(baseUrl, 'founder');
    const second = await registerAccount(baseUrl, 'newcomer');
    expect(await me(baseUrl, bearer(first.accessToken))).toMatchObject({
      role: 'owner',
      admin: true,
    });
    expect(await me(baseUrl, bearer(second.accessToken))).toMatchObject({
      role: 'member',
      admin: false,
    });
    const created = await sendJson(
      `${baseUrl}/api/channels`,
      'POST',
      { name: 'owned' },
      bearer(first.accessToken),
    );
    expect(created.status).toBe(201);
  });

  it('a moderator cannot disable, change or demote an admin or another moderator', async () => {
    const baseUrl = await start();
    await registerAccount(baseUrl, 'founder');
    for (const username of ['adam', 'mona', 'milo', 'mia']) {
      await registerAccount(baseUrl, username);
    }
    const put = (path: string, body: unknown, headers = operator()) =>
      sendJson(`${baseUrl}${path}`, 'PUT', body, headers);
    expect((await put('/api/admin/users/adam/role', { role: 'admin' })).status).toBe(200);
    for (const moderator of ['mona', 'milo']) {
      const granted = await put(`/api/admin/users/${moderator}/grants/*`, {
        grants: ['join', 'speak', 'moderate'],
      });
      expect(granted.status).toBe(200);
    }
    const mona = bearer((await loginAccount(baseUrl, 'mona', TEST_PASSWORD)).accessToken);
    expect(await me(baseUrl, mona)).toMatchObject({ role: 'moderator' });
    const post = (path: string) => sendJson(`${baseUrl}${path}`, 'POST', {}, mona);
    await expectError(await post('/api/admin/users/adam/disable'), 403, 'forbidden');
    await expectError(await post('/api/admin/users/milo/disable'), 403, 'forbidden');
    await expectError(
      await put('/api/admin/users/adam/grants/*', { grants: ['join'] }, mona),
      403,
      'forbidden',
    );
    await expectError(
      await fetch(`${baseUrl}/api/admin/users/adam/grants/*`, { method: 'DELETE', headers: mona }),
      403,
      'forbidden',
    );
    await expectError(
      await put('/api/admin/users/adam/role', { role: 'member' }, mona),
      403,
      'forbidden',
    );
    // Nobody grants what they do not hold, nor a role at their own level.
    await expectError(
      await put('/api/admin/users/mia/grants/*', { grants: ['stream'] }, mona),
      403,
      'forbidden',
    );
    await expectError(
      await put('/api/admin/users/mia/role', { role: 'admin' }, mona),
      403,
      'forbidden',
    );
    // Below its rank it may act.
    expect((await post('/api/admin/users/mia/disable')).status).toBe(200);
  });
});

describe('moderation', () => {
  it('a ban removes the live peer at once and refuses its rejoin; a kick only removes', async () => {
    const baseUrl = await start();
    await ensureChannel(baseUrl, 'lobby');
    const troll = await guestSession(baseUrl, 'Troll');
    const kicked = await guestSession(baseUrl, 'Loud');
    const clients = await Promise.all(
      [troll, kicked].map((auth, index) =>
        TestSignalingClient.connect(baseUrl, `peer${index}`, { auth }),
      ),
    );
    const peerIds: string[] = [];
    for (const client of clients) {
      const caps = (await client.request('getRouterRtpCapabilities')) as {
        data: { rtpCapabilities: unknown };
      };
      const joined = (await client.request('join', {
        channel: 'lobby',
        rtpCapabilities: caps.data.rtpCapabilities,
      })) as { data: { peerId: string } };
      peerIds.push(joined.data.peerId);
    }
    await waitUntil(async () => {
      const rows = await api!.database.query('SELECT 1 FROM session_history WHERE left_at IS NULL');
      return rows.length === 2;
    });
    const act = (peerId: string, action: string, body: unknown) =>
      sendJson(
        `${baseUrl}/api/channels/lobby/participants/${peerId}/${action}`,
        'POST',
        body,
        operator(),
      );
    expect((await act(peerIds[0]!, 'ban', { serverWide: false })).status).toBe(204);
    expect(await clients[0]!.closed()).toBe(4403);
    expect(
      clients[0]!.messages.some(
        (message) => message.kind === 'notification' && message.method === 'removed',
      ),
    ).toBe(true);
    await expectError(await join(baseUrl, 'lobby', troll), 403, 'forbidden');
    expect((await act(peerIds[1]!, 'kick', {})).status).toBe(204);
    expect(await clients[1]!.closed()).toBe(4403);
    expect((await join(baseUrl, 'lobby', kicked)).status).toBe(200);
    // A guest cannot act at all, and nobody acts on someone of their own rank or above.
    const guestHeaders = await guestSession(baseUrl, 'Nobody');
    const byGuest = await sendJson(
      `${baseUrl}/api/channels/lobby/participants/${peerIds[1]}/kick`,
      'POST',
      {},
      guestHeaders,
    );
    expect(byGuest.status).toBe(403);
  });

  it("an account's server mute holds after it leaves and rejoins", async () => {
    const baseUrl = await start();
    await ensureChannel(baseUrl, 'lobby');
    const ada = bearer((await registerAccount(baseUrl, 'ada')).accessToken);
    const moderator = await TestSignalingClient.connect(baseUrl, 'op', { auth: operator() });
    const joinOver = async (client: TestSignalingClient) => {
      const caps = (await client.request('getRouterRtpCapabilities')) as {
        data: { rtpCapabilities: unknown };
      };
      return (await client.request('join', {
        channel: 'lobby',
        rtpCapabilities: caps.data.rtpCapabilities,
      })) as { data: { peerId: string; participants: { id: string; serverMuted: boolean }[] } };
    };
    await joinOver(moderator);
    const first = await TestSignalingClient.connect(baseUrl, 'ada', { auth: ada });
    const { peerId } = (await joinOver(first)).data;
    const muted = await moderator.request('setServerMuted', { peerId, muted: true });
    expect(muted).toMatchObject({ ok: true });
    await waitUntil(
      async () =>
        (await api!.database.query('SELECT 1 FROM server_mutes WHERE channel = $1', ['lobby']))
          .length === 1,
    );
    first.close();
    const again = await TestSignalingClient.connect(baseUrl, 'ada', { auth: ada });
    const rejoined = await joinOver(again);
    const self = rejoined.data.participants.find((p) => p.id === rejoined.data.peerId);
    expect(self?.serverMuted).toBe(true);
    again.close();
    moderator.close();
  });
});

describe('per-identity caps and pages', () => {
  it('below admin, an identity creates a capped number of channels an hour; admins are exempt', async () => {
    const baseUrl = await start({ channelsPerHour: '2' });
    await registerAccount(baseUrl, 'founder');
    const mod = await registerAccount(baseUrl, 'mod');
    const granted = await sendJson(
      `${baseUrl}/api/admin/users/mod/grants/*`,
      'PUT',
      { grants: ['join', 'moderate'] },
      operator(),
    );
    expect(granted.status).toBe(200);
    const moderator = bearer((await loginAccount(baseUrl, 'mod')).accessToken);
    expect(mod.user.username).toBe('mod');
    const create = (name: string, headers: Record<string, string>) =>
      sendJson(`${baseUrl}/api/channels`, 'POST', { name }, headers);
    expect((await create('one', moderator)).status).toBe(201);
    expect((await create('two', moderator)).status).toBe(201);
    await expectError(await create('three', moderator), 429, 'rate_limited');
    for (const name of ['a1', 'a2', 'a3'])
      expect((await create(name, operator())).status).toBe(201);
  });

  it('one identity holds a capped number of voice sessions at once', async () => {
    const baseUrl = await start({ maxVoiceSessions: '1' });
    await ensureChannel(baseUrl, 'lobby');
    const headers = await guestSession(baseUrl, 'Busy');
    const client = await TestSignalingClient.connect(baseUrl, 'Busy', { auth: headers });
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    await client.request('join', { channel: 'lobby', rtpCapabilities: caps.data.rtpCapabilities });
    await waitUntil(
      async () =>
        (await api!.database.query('SELECT 1 FROM session_history WHERE left_at IS NULL'))
          .length === 1,
    );
    await expectError(await join(baseUrl, 'lobby', headers), 429, 'rate_limited');
    expect((await join(baseUrl, 'lobby', await guestSession(baseUrl, 'Free'))).status).toBe(200);
    client.close();
  });

  it('GET /api/channels answers a page at a time, oldest first, with the next offset', async () => {
    const baseUrl = await start();
    for (const name of ['c1', 'c2', 'c3']) await ensureChannel(baseUrl, name);
    const page = async (query: string) =>
      (await (await fetch(`${baseUrl}/api/channels?${query}`, { headers: operator() })).json()) as {
        channels: { name: string }[];
        nextOffset: number | null;
      };
    const first = await page('limit=2');
    expect(first.channels.map((channel) => channel.name)).toEqual(['c1', 'c2']);
    expect(first.nextOffset).toBe(2);
    const last = await page('limit=2&offset=2');
    expect(last.channels.map((channel) => channel.name)).toEqual(['c3']);
    expect(last.nextOffset).toBeNull();
    await expectError(
      await fetch(`${baseUrl}/api/channels?limit=0`, { headers: operator() }),
      400,
      'bad_request',
    );
  });
});

describe('join tokens and reservations', () => {
  it('one identity holds a capped number of joins waiting to connect', async () => {
    const baseUrl = await start({ maxPendingJoins: '2' });
    await ensureChannel(baseUrl, 'lobby');
    const headers = await guestSession(baseUrl, 'Hoarder');
    for (let i = 0; i < 2; i++) {
      voiceJoinSchema.parse(await (await join(baseUrl, 'lobby', headers)).json());
    }
    await expectError(await join(baseUrl, 'lobby', headers), 429, 'rate_limited');
    // Someone else is not held back by it.
    expect((await join(baseUrl, 'lobby', await guestSession(baseUrl, 'Other'))).status).toBe(200);
  });
});

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
