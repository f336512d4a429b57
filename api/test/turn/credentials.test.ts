import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@hearth/server-common';
import { loadApiConfig } from '../../src/config';
import { iceServersFor, turnCredentials } from '../../src/turn/credentials';

const SECRET = 'turn-test-secret-0123456789abcdef0123456789';
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5, 678);

// coturn's password for a username, computed by OpenSSL rather than by the code under test.
function opensslPassword(secret: string, username: string): string {
  const result = spawnSync('openssl', ['dgst', '-sha1', '-hmac', secret, '-binary'], {
    input: username,
  });
  expect(result.status).toBe(0);
  return result.stdout.toString('base64');
}

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('turnCredentials()', () => {
  it('turnCredentials() names the expiry in Unix seconds and signs the username as coturn does', () => {
    const credentials = turnCredentials({
      secret: SECRET,
      user: 'guest:ab-12',
      ttlSeconds: 600,
      now: NOW,
    });
    const expiresAt = Math.floor(NOW / 1000) + 600;
    expect(credentials.username).toBe(`${expiresAt}:guest:ab-12`);
    expect(credentials.expiresAt).toBe(expiresAt);
    expect(credentials.credential).toBe(opensslPassword(SECRET, credentials.username));
  });

  it('turnCredentials() gives another password for another secret, user or expiry', () => {
    const base = turnCredentials({ secret: SECRET, user: 'u1', ttlSeconds: 600, now: NOW });
    const others = [
      turnCredentials({ secret: `${SECRET}x`, user: 'u1', ttlSeconds: 600, now: NOW }),
      turnCredentials({ secret: SECRET, user: 'u2', ttlSeconds: 600, now: NOW }),
      turnCredentials({ secret: SECRET, user: 'u1', ttlSeconds: 601, now: NOW }),
    ];
    for (const other of others) expect(other.credential).not.toBe(base.credential);
  });

  it('turnCredentials() refuses an empty secret and a lifetime that is not a positive integer', () => {
    expect(() => turnCredentials({ secret: '', user: 'u', ttlSeconds: 60 })).toThrow(TypeError);
    for (const ttlSeconds of [0, -5, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => turnCredentials({ secret: SECRET, user: 'u', ttlSeconds })).toThrow(
        'positive whole number of seconds',
      );
    }
  });

  it('iceServersFor() gives every URL one set of fresh credentials, and nothing without URLs', () => {
    const urls = ['turn:127.0.0.1:3478?transport=udp', 'turn:127.0.0.1:3478?transport=tcp'];
    const [server, ...rest] = iceServersFor({ urls, secret: SECRET, ttlSeconds: 60 }, 'u', NOW);
    expect(rest).toEqual([]);
    expect(server).toEqual({
      urls,
      username: `${Math.floor(NOW / 1000) + 60}:u`,
      credential: opensslPassword(SECRET, `${Math.floor(NOW / 1000) + 60}:u`),
    });
    expect(iceServersFor({ urls: [], secret: '', ttlSeconds: 60 }, 'u', NOW)).toEqual([]);
  });
});

describe('TURN settings', () => {
  const urls =
    'turn:turn.example.com:3478?transport=udp, turn:turn.example.com:3478?transport=tcp,turns:turn.example.com:443?transport=tcp';

  it('loadApiConfig() reads the TURN URLs, secret and lifetime; one day by default', () => {
    const config = loadApiConfig({ API_TURN_URLS: urls, API_TURN_SECRET: SECRET });
    expect(config.turnUrls).toEqual([
      'turn:turn.example.com:3478?transport=udp',
      'turn:turn.example.com:3478?transport=tcp',
      'turns:turn.example.com:443?transport=tcp',
    ]);
    expect(config.turnSecret).toBe(SECRET);
    expect(config.turnTtlSeconds).toBe(86_400);
    expect(loadApiConfig({ API_TURN_TTL: '3600' }).turnTtlSeconds).toBe(3600);
  });

  it('the embedded profile runs its own coturn unless TURN URLs are given; production never by default', () => {
    expect(loadApiConfig({}).embeddedTurn).toBe(true);
    expect(loadApiConfig({ API_TURN_URLS: urls, API_TURN_SECRET: SECRET }).embeddedTurn).toBe(
      false,
    );
    expect(loadApiConfig({ API_EMBEDDED_TURN: 'false' }).embeddedTurn).toBe(false);
    const production = loadApiConfig({
      API_PROFILE: 'production',
      API_JWT_SECRET: SECRET,
      API_CLUSTER_SECRET: SECRET,
    });
    expect(production.embeddedTurn).toBe(false);
    expect(loadApiConfig({}).embeddedTurnPort).toBe(3478);
  });

  it('loadApiConfig() refuses URLs without a secret, a secret without URLs, and both with the embedded coturn', () => {
    expect(() => loadApiConfig({ API_TURN_URLS: urls })).toThrow(
      'API_TURN_URLS needs API_TURN_SECRET',
    );
    expect(() => loadApiConfig({ API_TURN_SECRET: SECRET })).toThrow(
      'API_TURN_SECRET is set but API_TURN_URLS is not',
    );
    expect(() =>
      loadApiConfig({ API_TURN_URLS: urls, API_TURN_SECRET: SECRET, API_EMBEDDED_TURN: 'true' }),
    ).toThrow('leave API_TURN_URLS unset');
  });

  it('loadApiConfig() refuses bad TURN URLs, secrets and lifetimes, naming the problem but never the secret', () => {
    const bad = [
      { API_TURN_URLS: 'http://turn.example.com', API_TURN_SECRET: SECRET },
      { API_TURN_URLS: 'turn:a.example.com?transport=sctp', API_TURN_SECRET: SECRET },
      { API_TURN_URLS: 'turn:a b', API_TURN_SECRET: SECRET },
      { API_TURN_URLS: urls, API_TURN_SECRET: 'short' },
      { API_TURN_URLS: urls, API_TURN_SECRET: `${SECRET}\nuse-auth-secret` },
      { API_TURN_TTL: '59' },
      { API_TURN_TTL: '604801' },
      { API_EMBEDDED_TURN_PORT: '70000' },
    ];
    for (const env of bad) {
      const error = thrownBy(() => loadApiConfig(env));
      expect(error, JSON.stringify(env)).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain(SECRET);
    }
  });
});
