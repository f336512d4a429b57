import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@hearth/server-common';
import { databaseTimeouts, loadApiConfig } from '../src/config';
import { JWT_SECRET_FILE, readOrCreateSecret, writeAdminToken } from '../src/secret-files';

const SECRET = 's'.repeat(32);

describe('loadApiConfig()', () => {
  it('loadApiConfig() reads DATABASE_URL without the API_ prefix, and the account settings', () => {
    const config = loadApiConfig({
      DATABASE_URL: 'postgres://hearth@db.internal:5432/hearth',
      API_USER_GRANTS: 'join, speak',
      API_REGISTRATION: 'false',
      API_JWT_SECRET: SECRET,
      API_ACCESS_TOKEN_TTL: '300',
      API_REFRESH_TOKEN_TTL: '3600',
      API_AUTH_RATE: '3',
    });
    expect(config).toMatchObject({
      databaseUrl: 'postgres://hearth@db.internal:5432/hearth',
      userGrants: ['join', 'speak'],
      registration: false,
      jwtSecret: SECRET,
      accessTokenTtlSeconds: 300,
      refreshTokenTtlSeconds: 3600,
      authRatePerSecond: 3,
    });
  });

  it('loadApiConfig() defaults to PGlite, 15 min access and 30 day refresh tokens, registration on', () => {
    expect(loadApiConfig({})).toMatchObject({
      databaseUrl: undefined,
      userGrants: ['join', 'speak', 'screen-share'],
      registration: true,
      accessTokenTtlSeconds: 900,
      refreshTokenTtlSeconds: 30 * 24 * 3600,
      authRatePerSecond: 5,
    });
  });

  it('loadApiConfig() bounds PostgreSQL connects at 5 s and statements at 10 s unless told', () => {
    expect(databaseTimeouts(loadApiConfig({}))).toEqual({
      connectTimeoutMs: 5000,
      statementTimeoutMs: 10_000,
    });
    const config = loadApiConfig({
      API_DB_CONNECT_TIMEOUT_MS: '1500',
      API_DB_STATEMENT_TIMEOUT_MS: '30000',
    });
    expect(databaseTimeouts(config)).toEqual({
      connectTimeoutMs: 1500,
      statementTimeoutMs: 30_000,
    });
    expect(() => loadApiConfig({ API_DB_CONNECT_TIMEOUT_MS: '0' })).toThrow(
      /databaseConnectTimeoutMs/,
    );
  });

  it('loadApiConfig() lists a bad DATABASE_URL together with the other problems', () => {
    const load = () =>
      loadApiConfig({ DATABASE_URL: 'mysql://x', API_USER_GRANTS: 'fly', API_JWT_SECRET: SECRET });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/userGrants.*DATABASE_URL: must be a postgres/);
  });

  it('loadApiConfig() reads the handoff settings, 32 spectators by default, and bounds them', () => {
    expect(loadApiConfig({ API_JWT_SECRET: SECRET })).toMatchObject({
      handoffViewers: 32,
      handoffPrewarm: 0.5,
      handoffRelease: 0.6,
    });
    expect(
      loadApiConfig({
        API_JWT_SECRET: SECRET,
        API_HANDOFF_VIEWERS: '1',
        API_HANDOFF_PREWARM: '0.25',
        API_HANDOFF_RELEASE: '0.9',
      }),
    ).toMatchObject({ handoffViewers: 1, handoffPrewarm: 0.25, handoffRelease: 0.9 });
    expect(() => loadApiConfig({ API_JWT_SECRET: SECRET, API_HANDOFF_VIEWERS: '0' })).toThrow(
      /handoffViewers/,
    );
    expect(() => loadApiConfig({ API_JWT_SECRET: SECRET, API_HANDOFF_PREWARM: '1.5' })).toThrow(
      /handoffPrewarm/,
    );
  });

  it('the production profile refuses to start without API_JWT_SECRET', () => {
    expect(() => loadApiConfig({ API_PROFILE: 'production' })).toThrow(/API_JWT_SECRET/);
    expect(loadApiConfig({ API_PROFILE: 'production', API_JWT_SECRET: SECRET }).profile).toBe(
      'production',
    );
    expect(() => loadApiConfig({ API_JWT_SECRET: 'short' })).toThrow(ConfigError);
  });
});

describe('secret files', () => {
  it('readOrCreateSecret() creates an owner-only secret once and reads it back afterwards', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-jwt-'));
    try {
      const secret = readOrCreateSecret(dataDir, JWT_SECRET_FILE);
      expect(secret).toMatch(/^[0-9a-f]{64}$/);
      expect(readOrCreateSecret(dataDir, JWT_SECRET_FILE)).toBe(secret);
      expect(fs.statSync(path.join(dataDir, JWT_SECRET_FILE)).mode & 0o777).toBe(0o600);
      // A file too short to be one of ours is replaced.
      fs.writeFileSync(path.join(dataDir, JWT_SECRET_FILE), 'short\n');
      expect(readOrCreateSecret(dataDir, JWT_SECRET_FILE)).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('writeAdminToken() writes a fresh owner-only token on every start', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-admin-'));
    try {
      const first = writeAdminToken(dataDir);
      const second = writeAdminToken(dataDir);
      expect(second).not.toBe(first);
      expect(fs.readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim()).toBe(second);
      expect(fs.statSync(path.join(dataDir, 'admin-token')).mode & 0o777).toBe(0o600);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
