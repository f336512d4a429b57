import { afterEach, describe, expect, it } from 'vitest';
import { sessionResponseSchema, tokenResponseSchema } from '@hearth/protocol';
import { TEST_PASSWORD, expectError, registerAccount, sendJson } from './support/accounts';
import { startTestApi, type TestApi } from './support/server';

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

/** The one `hearth_refresh` Set-Cookie of a response, split into its attributes. */
function refreshCookie(response: Response): { value: string; attributes: string[] } {
  const cookies = response.headers.getSetCookie().filter((c) => c.startsWith('hearth_refresh='));
  expect(cookies).toHaveLength(1);
  const [pair, ...attributes] = cookies[0]!.split('; ');
  return { value: pair!.slice('hearth_refresh='.length), attributes };
}

const postWithCookie = (path: string, cookie: string, headers: Record<string, string> = {}) =>
  fetch(`${api!.baseUrl}${path}`, {
    method: 'POST',
    headers: { cookie: `hearth_refresh=${cookie}`, ...headers },
  });

describe('the refresh token cookie', () => {
  it('POST /api/auth/login sets an HttpOnly, SameSite=Strict cookie on /api/auth that lives as long as the token, not Secure over plain HTTP', async () => {
    api = await startTestApi();
    const registered = await registerAccount(api.baseUrl, 'ada');
    const response = await sendJson(`${api.baseUrl}/api/auth/login`, 'POST', {
      username: 'ada',
      password: TEST_PASSWORD,
    });
    expect(response.status).toBe(200);
    const cookie = refreshCookie(response);
    const body = tokenResponseSchema.parse(await response.json());
    expect(cookie.value).toBe(body.refreshToken);
    expect(cookie.value).not.toBe(registered.refreshToken);
    expect(cookie.attributes.sort()).toEqual(
      ['HttpOnly', `Max-Age=${30 * 24 * 3600}`, 'Path=/api/auth', 'SameSite=Strict'].sort(),
    );
  });

  it('the cookie is Secure when a trusted proxy says the request came over TLS, and not when anyone else says so', async () => {
    api = await startTestApi({ api: { trustedProxies: '127.0.0.1/32' } });
    const overTls = await sendJson(
      `${api.baseUrl}/api/auth/register`,
      'POST',
      { username: 'ada', password: TEST_PASSWORD },
      { 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.1' },
    );
    expect(overTls.status).toBe(201);
    expect(refreshCookie(overTls).attributes).toContain('Secure');
    await api.close();

    api = await startTestApi();
    const spoofed = await sendJson(
      `${api.baseUrl}/api/auth/register`,
      'POST',
      { username: 'ada', password: TEST_PASSWORD },
      { 'x-forwarded-proto': 'https' },
    );
    expect(spoofed.status).toBe(201);
    expect(refreshCookie(spoofed).attributes).not.toContain('Secure');
  });

  it('POST /api/auth/refresh with the cookie alone rotates it and answers no refresh token in the body; the old cookie is then refused and cleared', async () => {
    api = await startTestApi();
    const first = await registerAccount(api.baseUrl, 'ada');

    const refreshed = await postWithCookie('/api/auth/refresh', first.refreshToken);
    expect(refreshed.status).toBe(200);
    const rotated = refreshCookie(refreshed);
    expect(rotated.value).toMatch(/^rt_[\w-]{43}$/);
    expect(rotated.value).not.toBe(first.refreshToken);
    const body: unknown = await refreshed.json();
    expect(body).not.toHaveProperty('refreshToken');
    const session = sessionResponseSchema.parse(body);
    const me = await fetch(`${api.baseUrl}/api/auth/me`, {
      headers: { authorization: `Bearer ${session.accessToken}` },
    });
    expect(me.status).toBe(200);

    // The new cookie works once more; replaying the first one is refused and the cookie cleared.
    expect((await postWithCookie('/api/auth/refresh', rotated.value)).status).toBe(200);
    const replay = await postWithCookie('/api/auth/refresh', first.refreshToken);
    await expectError(replay, 401, 'unauthorized');
    expect(refreshCookie(replay)).toEqual({
      value: '',
      attributes: expect.arrayContaining(['Max-Age=0']),
    });
  });

  it('POST /api/auth/refresh without a body or cookie is 401, and a body token still wins over the cookie', async () => {
    api = await startTestApi();
    await expectError(
      await fetch(`${api.baseUrl}/api/auth/refresh`, { method: 'POST' }),
      401,
      'unauthorized',
    );
    const ada = await registerAccount(api.baseUrl, 'ada');
    const bob = await registerAccount(api.baseUrl, 'bob');
    const response = await fetch(`${api.baseUrl}/api/auth/refresh`, {
      method: 'POST',
      headers: { cookie: `hearth_refresh=${bob.refreshToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: ada.refreshToken }),
    });
    expect(response.status).toBe(200);
    const tokens = tokenResponseSchema.parse(await response.json());
    expect(tokens.user.username).toBe('ada');
    expect(refreshCookie(response).value).toBe(tokens.refreshToken);
  });

  it('POST /api/auth/logout with the cookie revokes the login and clears the cookie', async () => {
    api = await startTestApi();
    const tokens = await registerAccount(api.baseUrl, 'ada');
    const logout = await postWithCookie('/api/auth/logout', tokens.refreshToken);
    expect(logout.status).toBe(204);
    expect(refreshCookie(logout).attributes).toContain('Max-Age=0');
    await expectError(
      await postWithCookie('/api/auth/refresh', tokens.refreshToken),
      401,
      'unauthorized',
    );
  });
});
