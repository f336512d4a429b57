import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { guestSessionSchema, meSchema, tokenResponseSchema, type Me } from '@hearth/protocol';
import { apiRoutes as routeTable } from '../src/routes/index';
import {
  TEST_PASSWORD,
  bearer,
  expectError,
  guestSession,
  loginAccount,
  operator,
  registerAccount,
  sendJson,
} from './support/accounts';
import { TEST_JWT_SECRET, startTestApi, type TestApi } from './support/server';

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function start(options: Parameters<typeof startTestApi>[0] = {}): Promise<TestApi> {
  api = await startTestApi(options);
  return api;
}

async function me(baseUrl: string, headers: Record<string, string>): Promise<Me> {
  const response = await fetch(`${baseUrl}/api/auth/me`, { headers });
  expect(response.status).toBe(200);
  return meSchema.parse(await response.json());
}

const refreshWith = (baseUrl: string, refreshToken: string) =>
  sendJson(`${baseUrl}/api/auth/refresh`, 'POST', { refreshToken });

// The first account registered on a fresh install becomes its owner, who holds every grant; tests
// of what an ordinary member may do register the owner first.
const registerOwner = (baseUrl: string) => registerAccount(baseUrl, 'owner');

describe('registration and login', () => {
  it('POST /api/auth/register creates an account whose access token works with its default grants', async () => {
    const { baseUrl } = await start();
    const owner = await registerOwner(baseUrl);
    const tokens = await registerAccount(baseUrl, 'Ada', { displayName: 'Ada L.' });
    expect(tokens).toEqual({
      accessToken: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
      refreshToken: expect.stringMatching(/^rt_[\w-]{43}$/),
      expiresIn: 900,
      user: { id: expect.any(String), username: 'Ada', displayName: 'Ada L.' },
    });
    expect(await me(baseUrl, bearer(tokens.accessToken))).toEqual({
      id: tokens.user.id,
      displayName: 'Ada L.',
      username: 'Ada',
      guest: false,
      admin: false,
      role: 'member',
      serverGrants: ['join', 'speak', 'screen-share'],
      channelGrants: {},
    });
    const channels = await fetch(`${baseUrl}/api/channels`, {
      headers: bearer(tokens.accessToken),
    });
    expect(channels.status).toBe(200);
    // Only the first account became the owner, with every grant.
    expect(await me(baseUrl, bearer(owner.accessToken))).toMatchObject({
      username: 'owner',
      admin: true,
      role: 'owner',
      serverGrants: expect.arrayContaining(['join', 'speak', 'screen-share', 'moderate', 'stream']),
    });
  });

  it('POST /api/auth/guest starts a guest session under a normalized display name', async () => {
    const { baseUrl } = await start();
    const response = await sendJson(`${baseUrl}/api/auth/guest`, 'POST', {
      displayName: ' Ada\u200b   Lovelace\u202e ',
    });
    expect(response.status).toBe(201);
    const session = guestSessionSchema.parse(await response.json());
    expect(session).toEqual({
      accessToken: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
      expiresIn: expect.any(Number),
      user: { id: expect.stringMatching(/^guest:[0-9a-f-]{36}$/), displayName: 'Ada Lovelace' },
    });
    expect(await me(baseUrl, bearer(session.accessToken))).toMatchObject({
      id: session.user.id,
      displayName: 'Ada Lovelace',
      guest: true,
      role: 'guest',
    });
    // Each session is its own guest, even under the same name.
    const other = await me(baseUrl, await guestSession(baseUrl, 'Ada Lovelace'));
    expect(other.id).not.toBe(session.user.id);
    await expectError(
      await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: '\u200b' }),
      400,
      'bad_request',
    );
    await expectError(
      await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: 'Ada', admin: true }),
      400,
      'bad_request',
    );
  });

  it('POST /api/auth/register refuses a bad username, a short password and a taken name in any case', async () => {
    const { baseUrl } = await start();
    const url = `${baseUrl}/api/auth/register`;
    expect(
      await expectError(
        await sendJson(url, 'POST', { username: 'a b', password: TEST_PASSWORD }),
        400,
        'bad_request',
      ),
    ).toContain('username:');
    expect(
      await expectError(
        await sendJson(url, 'POST', { username: 'ada', password: 'short' }),
        400,
        'bad_request',
      ),
    ).toContain('at least 8');
    await expectError(
      await sendJson(url, 'POST', { username: 'ada', password: 'x'.repeat(129) }),
      400,
      'bad_request',
    );
    await registerAccount(baseUrl, 'ada');
    await expectError(
      await sendJson(url, 'POST', { username: 'ADA', password: TEST_PASSWORD }),
      409,
      'conflict',
    );
  });

  it('POST /api/auth/register is 403 while registration is off', async () => {
    const { baseUrl } = await start({ api: { registration: 'false' } });
    await expectError(
      await sendJson(`${baseUrl}/api/auth/register`, 'POST', {
        username: 'ada',
        password: TEST_PASSWORD,
      }),
      403,
      'forbidden',
    );
  });

  it('POST /api/auth/login accepts the password in any username case; a wrong one or an unknown user is 401 alike', async () => {
    const { baseUrl } = await start();
    const registered = await registerAccount(baseUrl, 'Ada');
    const tokens = await loginAccount(baseUrl, 'aDa');
    expect(tokens.user).toEqual(registered.user);
    expect(tokens.refreshToken).not.toBe(registered.refreshToken);
    const url = `${baseUrl}/api/auth/login`;
    const wrong = await expectError(
      await sendJson(url, 'POST', { username: 'ada', password: 'not the password' }),
      401,
      'unauthorized',
    );
    const unknown = await expectError(
      await sendJson(url, 'POST', { username: 'nobody', password: 'not the password' }),
      401,
      'unauthorized',
    );
    expect(unknown).toBe(wrong);
  });

  it('POST /api/auth/login for an unknown user spends a password hash like a known one', async () => {
    const { baseUrl } = await start();
    await registerAccount(baseUrl, 'ada');
    const url = `${baseUrl}/api/auth/login`;
    const timed = async (username: string) => {
      const started = performance.now();
      const response = await sendJson(url, 'POST', { username, password: 'wrong password' });
      expect(response.status).toBe(401);
      return performance.now() - started;
    };
    // The first unknown login also creates the decoy hash; the second one is what is measured.
    await timed('ghost-0');
    const known = Math.min(await timed('ada'), await timed('ada'));
    const unknown = Math.min(await timed('ghost-1'), await timed('ghost-2'));
    expect(unknown).toBeGreaterThan(known * 0.5);
  });

  it('/api/auth/* has its own per-address rate limit (429)', async () => {
    const { baseUrl } = await start({ api: { authRatePerSecond: '2' } });
    const statuses = await Promise.all(
      Array.from({ length: 12 }, () =>
        sendJson(`${baseUrl}/api/auth/login`, 'POST', {}).then((response) => response.status),
      ),
    );
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(6);
    expect(statuses.filter((status) => status === 400).length).toBeGreaterThanOrEqual(1);
  });
});

describe('refresh and logout', () => {
  it('POST /api/auth/refresh rotates: the new pair works, the old refresh token is single use', async () => {
    const { baseUrl } = await start();
    const first = await registerAccount(baseUrl, 'ada');
    const response = await refreshWith(baseUrl, first.refreshToken);
    expect(response.status).toBe(200);
    const second = tokenResponseSchema.parse(await response.json());
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.user).toEqual(first.user);
    expect((await me(baseUrl, bearer(second.accessToken))).id).toBe(first.user.id);
    const third = tokenResponseSchema.parse(
      await (await refreshWith(baseUrl, second.refreshToken)).json(),
    );
    expect(third.refreshToken).not.toBe(second.refreshToken);
  });

  it('presenting a used refresh token again revokes every token of that login, but not other logins', async () => {
    const { baseUrl } = await start();
    const stolen = await registerAccount(baseUrl, 'ada');
    const otherDevice = await loginAccount(baseUrl, 'ada');
    const legitimate = tokenResponseSchema.parse(
      await (await refreshWith(baseUrl, stolen.refreshToken)).json(),
    );
    expect(
      await expectError(await refreshWith(baseUrl, stolen.refreshToken), 401, 'unauthorized'),
    ).toContain('already used');
    await expectError(await refreshWith(baseUrl, legitimate.refreshToken), 401, 'unauthorized');
    expect((await refreshWith(baseUrl, otherDevice.refreshToken)).status).toBe(200);
  });

  it('POST /api/auth/logout is 204 and ends the login; an unknown token is 204 too', async () => {
    const { baseUrl } = await start();
    const tokens = await registerAccount(baseUrl, 'ada');
    const logout = await sendJson(`${baseUrl}/api/auth/logout`, 'POST', {
      refreshToken: tokens.refreshToken,
    });
    expect(logout.status).toBe(204);
    await expectError(await refreshWith(baseUrl, tokens.refreshToken), 401, 'unauthorized');
    const unknown = await sendJson(`${baseUrl}/api/auth/logout`, 'POST', {
      refreshToken: 'rt_unknown',
    });
    expect(unknown.status).toBe(204);
    await expectError(await sendJson(`${baseUrl}/api/auth/logout`, 'POST', {}), 400, 'bad_request');
  });

  it('grants given after login apply from the next refresh on', async () => {
    const { baseUrl, stores } = await start();
    await registerOwner(baseUrl);
    const tokens = await registerAccount(baseUrl, 'ada');
    await stores.memberships.set(tokens.user.id, 'studio', ['stream']);
    const path = `${baseUrl}/api/channels/studio/stream-key`;
    await expectError(
      await fetch(path, { method: 'POST', headers: bearer(tokens.accessToken) }),
      403,
      'forbidden',
    );
    const refreshed = tokenResponseSchema.parse(
      await (await refreshWith(baseUrl, tokens.refreshToken)).json(),
    );
    const created = await fetch(path, { method: 'POST', headers: bearer(refreshed.accessToken) });
    expect(created.status).toBe(201);
  });
});

describe('access tokens', () => {
  const key = new TextEncoder().encode(TEST_JWT_SECRET);
  const claims = { name: 'Ada', role: 'member', grants: { server: ['join'], channels: {} } };

  it('an expired access token is 401 "access token expired"', async () => {
    const { baseUrl } = await start();
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(crypto.randomUUID())
      .setIssuer('hearth-api')
      .setAudience('hearth-api')
      .setIssuedAt(now - 120)
      .setExpirationTime(now - 60)
      .sign(key);
    const message = await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: bearer(token) }),
      401,
      'unauthorized',
    );
    expect(message).toBe('access token expired');
  });

  it('a token signed with another secret, or with alg none, is 401', async () => {
    const { baseUrl } = await start();
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(crypto.randomUUID())
      .setIssuer('hearth-api')
      .setAudience('hearth-api')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('another-secret-that-is-long-enough-000000'));
    await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: bearer(forged) }),
      401,
      'unauthorized',
    );
    const unsigned = [
      Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url'),
      Buffer.from(JSON.stringify({ ...claims, sub: crypto.randomUUID() })).toString('base64url'),
      '',
    ].join('.');
    await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: bearer(unsigned) }),
      401,
      'unauthorized',
    );
  });
});

describe('grants on REST routes', () => {
  it('every /api route but health, ready, docs, voice capabilities and auth needs credentials (401)', async () => {
    const { baseUrl } = await start();
    const publicRoutes = [
      'get /api/health',
      'get /api/ready',
      'get /api/docs',
      'get /api/voice/capabilities',
      'post /api/auth/register',
      'post /api/auth/guest',
      'post /api/auth/login',
      'post /api/auth/refresh',
      'post /api/auth/logout',
      // The CDN edge's: it checks the edge secret itself (403 without it, below).
      'get /api/edge/live-origin/:channel',
    ];
    expect((await fetch(`${baseUrl}/api/edge/live-origin/lobby`)).status).toBe(403);
    const apiRoutes = routeTable.filter((operation) => operation.path.startsWith('/api/'));
    const unauthenticated = apiRoutes.filter((operation) => !operation.auth);
    expect(
      unauthenticated.map((operation) => `${operation.method} ${operation.path}`).sort(),
    ).toEqual([...publicRoutes].sort());
    for (const operation of apiRoutes.filter((candidate) => candidate.auth)) {
      const path = operation.path.replace(/:(\w+)/g, (_, name) =>
        name === 'username' ? 'ada' : 'lobby',
      );
      const response = await fetch(`${baseUrl}${path}`, {
        method: operation.method.toUpperCase(),
        headers: { 'content-type': 'application/json' },
        body: operation.method === 'get' ? undefined : '{}',
      });
      expect({ route: `${operation.method} ${path}`, status: response.status }).toEqual({
        route: `${operation.method} ${path}`,
        status: 401,
      });
    }
  });

  it('a registered account can read but not create channels or manage stream keys by default (403)', async () => {
    const { baseUrl } = await start();
    await registerOwner(baseUrl);
    const { accessToken } = await registerAccount(baseUrl, 'ada');
    const headers = bearer(accessToken);
    expect((await fetch(`${baseUrl}/api/streams`, { headers })).status).toBe(200);
    expect((await fetch(`${baseUrl}/api/channels/lobby/stream`, { headers })).status).toBe(200);
    await expectError(
      await sendJson(`${baseUrl}/api/channels`, 'POST', { name: 'mine' }, headers),
      403,
      'forbidden',
    );
    await expectError(
      await fetch(`${baseUrl}/api/channels/lobby/stream-key`, { method: 'POST', headers }),
      403,
      'forbidden',
    );
    await expectError(await fetch(`${baseUrl}/api/stream-keys`, { headers }), 403, 'forbidden');
    await expectError(await fetch(`${baseUrl}/api/admin/users`, { headers }), 403, 'forbidden');
  });

  it('moderate in one channel deletes that channel only; moderate server-wide creates channels', async () => {
    const { baseUrl, stores } = await start();
    await registerOwner(baseUrl);
    const registered = await registerAccount(baseUrl, 'mod');
    await stores.channels.create('mine');
    await stores.channels.create('theirs');
    await stores.memberships.set(registered.user.id, 'mine', ['moderate']);
    const local = await loginAccount(baseUrl, 'mod');
    expect(
      await me(baseUrl, bearer(local.accessToken)).then((answer) => answer.channelGrants),
    ).toEqual({ mine: ['moderate'] });
    await expectError(
      await fetch(`${baseUrl}/api/channels/theirs`, {
        method: 'DELETE',
        headers: bearer(local.accessToken),
      }),
      403,
      'forbidden',
    );
    const deleted = await fetch(`${baseUrl}/api/channels/mine`, {
      method: 'DELETE',
      headers: bearer(local.accessToken),
    });
    expect(deleted.status).toBe(204);
    await expectError(
      await sendJson(`${baseUrl}/api/channels`, 'POST', { name: 'new' }, bearer(local.accessToken)),
      403,
      'forbidden',
    );

    await stores.memberships.set(registered.user.id, '*', ['moderate']);
    const global = await loginAccount(baseUrl, 'mod');
    const created = await sendJson(
      `${baseUrl}/api/channels`,
      'POST',
      { name: 'new' },
      bearer(global.accessToken),
    );
    expect(created.status).toBe(201);
    expect(await stores.channels.get('new')).toMatchObject({ createdBy: registered.user.id });
  });

  it('reading one channel needs join in it; listing needs join server-wide', async () => {
    // Accounts hold at least the guest grants, so neither may include join here.
    const { baseUrl, stores } = await start({ api: { userGrants: 'speak', guestGrants: 'speak' } });
    await registerOwner(baseUrl);
    const registered = await registerAccount(baseUrl, 'ada');
    await stores.channels.create('club');
    await stores.memberships.set(registered.user.id, 'club', ['join']);
    const { accessToken } = await loginAccount(baseUrl, 'ada');
    const headers = bearer(accessToken);
    expect((await fetch(`${baseUrl}/api/channels/club`, { headers })).status).toBe(200);
    await expectError(await fetch(`${baseUrl}/api/channels/other`, { headers }), 403, 'forbidden');
    await expectError(await fetch(`${baseUrl}/api/channels`, { headers }), 403, 'forbidden');
  });

  it('in the production profile no guest session starts (403) and accounts work', async () => {
    const { baseUrl } = await start({ api: { profile: 'production' } });
    expect(
      await expectError(
        await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: 'Ada' }),
        403,
        'forbidden',
      ),
    ).toBe('guest access is disabled');
    await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: { authorization: 'Guest Ada' } }),
      401,
      'unauthorized',
    );
    const { accessToken } = await registerAccount(baseUrl, 'ada');
    expect((await fetch(`${baseUrl}/api/channels`, { headers: bearer(accessToken) })).status).toBe(
      200,
    );
  });

  it('GET /api/auth/me describes a guest and the operator token', async () => {
    const token = 'o'.repeat(64);
    const { baseUrl } = await start({ api: { adminToken: token } });
    expect(await me(baseUrl, await guestSession(baseUrl, 'Gus'))).toEqual({
      id: expect.stringMatching(/^guest:/),
      displayName: 'Gus',
      username: null,
      guest: true,
      admin: false,
      role: 'guest',
      serverGrants: ['join', 'speak'],
      channelGrants: {},
    });
    expect(await me(baseUrl, bearer(token))).toMatchObject({
      id: 'admin',
      admin: true,
      role: 'operator',
    });
    await expectError(await fetch(`${baseUrl}/api/auth/me`), 401, 'unauthorized');
  });

  it('the `Authorization: Guest <name>` header is no longer accepted (401)', async () => {
    const { baseUrl } = await start();
    for (const headers of [{ authorization: 'Guest Gus' }, { authorization: 'Guest %E0' }]) {
      await expectError(await fetch(`${baseUrl}/api/auth/me`, { headers }), 401, 'unauthorized');
      await expectError(
        await sendJson(`${baseUrl}/api/voice/join`, 'POST', { channel: 'lobby' }, headers),
        401,
        'unauthorized',
      );
    }
  });
});

describe('events socket', () => {
  type Received = { method: string; data: { stream?: { channel: string } } };

  function openEvents(baseUrl: string, query: string): { socket: WebSocket; received: Received[] } {
    const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}/ws/events?${query}`);
    const received: Received[] = [];
    socket.on('message', (raw) => received.push(JSON.parse(String(raw))));
    return { socket, received };
  }

  const closeCode = (socket: WebSocket) =>
    new Promise<number>((resolve) => socket.once('close', resolve));

  it('/ws/events without credentials closes with 4401; without join in the channel with 4403', async () => {
    const { baseUrl, stores } = await start({ api: { userGrants: 'speak', guestGrants: 'speak' } });
    expect(await closeCode(openEvents(baseUrl, 'channel=tv').socket)).toBe(4401);
    // A guest's display name is no credential any more.
    expect(await closeCode(openEvents(baseUrl, 'channel=tv&name=Ada').socket)).toBe(4401);
    await registerOwner(baseUrl);
    const registered = await registerAccount(baseUrl, 'ada');
    await stores.memberships.set(registered.user.id, 'club', ['join']);
    const { accessToken } = await loginAccount(baseUrl, 'ada');
    expect(
      await closeCode(openEvents(baseUrl, `channel=tv&access_token=${accessToken}`).socket),
    ).toBe(4403);
  });

  it('/ws/events with an access token sends only the events of channels the account may join', async () => {
    const { baseUrl, stores, streams } = await start({
      api: { userGrants: 'speak', guestGrants: 'speak' },
    });
    await registerOwner(baseUrl);
    const registered = await registerAccount(baseUrl, 'ada');
    await stores.memberships.set(registered.user.id, 'club', ['join']);
    const { accessToken } = await loginAccount(baseUrl, 'ada');
    const listening = streams.events.listenerCount('streamLive');
    const { socket, received } = openEvents(baseUrl, `access_token=${accessToken}`);
    // The socket opens before the server has checked the token and subscribed it.
    await expect.poll(() => streams.events.listenerCount('streamLive')).toBe(listening + 1);
    for (const channel of ['secret', 'club']) {
      const issued = await streams.createKey(channel);
      const grant = await streams.authorizePublish(issued.streamKey, {
        ip: '127.0.0.1',
        nodeId: 'ingest-a',
      });
      await streams.report('ingest-a', { kind: 'live', streamId: grant.streamId });
    }
    await expect
      .poll(() => received.map((message) => `${message.method} ${message.data.stream?.channel}`))
      .toEqual(['streamLive club']);
    socket.close();
  });

  it('/ws/events takes a guest session token as access_token', async () => {
    const { baseUrl, streams } = await start();
    await sendJson(`${baseUrl}/api/channels`, 'POST', { name: 'tv' }, operator());
    const { accessToken } = guestSessionSchema.parse(
      await (await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: 'Viewer' })).json(),
    );
    const listening = streams.events.listenerCount('streamLive');
    const { socket, received } = openEvents(baseUrl, `channel=tv&access_token=${accessToken}`);
    await expect.poll(() => streams.events.listenerCount('streamLive')).toBe(listening + 1);
    const issued = await streams.createKey('tv');
    const grant = await streams.authorizePublish(issued.streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    await streams.report('ingest-a', { kind: 'live', streamId: grant.streamId });
    await expect
      .poll(() => received.map((message) => `${message.method} ${message.data.stream?.channel}`))
      .toContain('streamLive tv');
    socket.close();
  });
});
