import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_LOGIN_THROTTLE,
  LoginThrottle,
  type LoginThrottleOptions,
} from '../src/accounts/login-throttle';
import { TEST_PASSWORD, expectError, registerAccount, sendJson } from './support/accounts';
import { startTestApi, type TestApi } from './support/server';

function throttle(options: Partial<LoginThrottleOptions> & { now: () => number }): LoginThrottle {
  return new LoginThrottle({ ...DEFAULT_LOGIN_THROTTLE, ...options });
}

describe('LoginThrottle', () => {
  it('admit() refuses an address after its burst of failures and lets it retry at the refill rate', () => {
    let now = 0;
    const limits = throttle({
      addressFailureBurst: 3,
      addressFailuresPerMinute: 2,
      now: () => now,
    });
    expect([1, 2, 3, 4].map(() => limits.admit('198.51.100.1'))).toEqual([true, true, true, false]);
    expect(limits.admit('198.51.100.2')).toBe(true);
    now = 29_000;
    expect(limits.admit('198.51.100.1')).toBe(false);
    now = 31_000;
    expect([limits.admit('198.51.100.1'), limits.admit('198.51.100.1')]).toEqual([true, false]);
  });

  it('succeeded() gives the address its attempt back, so right passwords never use up an allowance', () => {
    const limits = throttle({ addressFailureBurst: 2, now: () => 0 });
    for (let login = 0; login < 10; login++) {
      expect(limits.admit('198.51.100.1')).toBe(true);
      limits.succeeded('198.51.100.1');
    }
  });

  it('failed() delays failures past the free ones, doubling up to the bound, in any case of the username', () => {
    let now = 0;
    const limits = throttle({
      usernameFreeFailures: 2,
      usernameBaseDelayMs: 100,
      usernameMaxDelayMs: 1000,
      usernameMemoryMs: 60_000,
      now: () => now,
    });
    const delays = ['ada', 'ADA', 'Ada', 'ada', 'ada', 'ada', 'ada', 'ada'].map((name) =>
      limits.failed(name),
    );
    expect(delays).toEqual([0, 0, 100, 200, 400, 800, 1000, 1000]);
    expect(limits.failed('bob')).toBe(0);
    // Quiet for the memory time: the username starts over.
    now = 60_000 + 1;
    expect(limits.failed('ada')).toBe(0);
  });

  it('tracks at most maxKeys usernames, forgetting the least recently used one at a time', () => {
    const limits = throttle({ usernameFreeFailures: 0, maxKeys: 2, now: () => 0 });
    limits.failed('ada');
    limits.failed('bob');
    limits.failed('ada');
    limits.failed('cy');
    // bob was the least recently used and is forgotten; ada, used since, is still remembered.
    expect(limits.failed('ada')).toBe(DEFAULT_LOGIN_THROTTLE.usernameBaseDelayMs * 2 ** 2);
    expect(limits.failed('bob')).toBe(DEFAULT_LOGIN_THROTTLE.usernameBaseDelayMs);
  });
});

describe('POST /api/auth/login under attack', () => {
  let api: TestApi | undefined;

  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  // Requests come from 127.0.0.1, a trusted proxy here, so X-Forwarded-For names the client.
  const loginFrom = (address: string, password: string) =>
    sendJson(
      `${api!.baseUrl}/api/auth/login`,
      'POST',
      { username: 'ada', password },
      { 'x-forwarded-for': address },
    );

  it('after 50 wrong passwords from one address, the right one from another succeeds at once and the attacker gets 429', async () => {
    api = await startTestApi({ api: { trustedProxies: '127.0.0.1/32' } });
    await registerAccount(api.baseUrl, 'ada');
    const attacker = '203.0.113.66';

    const statuses = await Promise.all(
      Array.from({ length: 50 }, (_, attempt) =>
        loginFrom(attacker, `guess ${attempt}`).then((response) => response.status),
      ),
    );
    const allowance = DEFAULT_LOGIN_THROTTLE.addressFailureBurst;
    expect(statuses.filter((status) => status === 401)).toHaveLength(allowance);
    expect(statuses.filter((status) => status === 429)).toHaveLength(50 - allowance);

    const started = performance.now();
    const owner = await loginFrom('198.51.100.7', TEST_PASSWORD);
    const elapsedMs = performance.now() - started;
    expect(owner.status).toBe(200);
    // One password hash, not the username's failure delay (2 s by now).
    expect(elapsedMs).toBeLessThan(DEFAULT_LOGIN_THROTTLE.usernameMaxDelayMs);

    expect(
      await expectError(await loginFrom(attacker, TEST_PASSWORD), 429, 'rate_limited'),
    ).toMatch(/from this address/);
  }, 60_000);

  it('a wrong password on a username with many failures is answered late, with 401', async () => {
    api = await startTestApi({ api: { trustedProxies: '127.0.0.1/32' } });
    await registerAccount(api.baseUrl, 'ada');
    // Each guess from its own address: only the username's delay applies.
    for (let guess = 0; guess < DEFAULT_LOGIN_THROTTLE.usernameFreeFailures + 3; guess++) {
      expect((await loginFrom(`203.0.113.${guess}`, `guess ${guess}`)).status).toBe(401);
    }
    const started = performance.now();
    await expectError(await loginFrom('203.0.113.200', 'one more guess'), 401, 'unauthorized');
    expect(performance.now() - started).toBeGreaterThanOrEqual(
      DEFAULT_LOGIN_THROTTLE.usernameBaseDelayMs * 2 ** 3,
    );
  }, 60_000);
});
