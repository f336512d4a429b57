import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@hearth/server-common';
import { loadApiConfig } from '../../src/config';
import { resolveClusterSecret } from '../../src/nodes/config';
import { CLUSTER_SECRET_FILE } from '../../src/secret-files';

const secret = 's'.repeat(32);

describe('node settings in loadApiConfig()', () => {
  it('defaults to in-process stores, a 3 s node timeout and 1 s sweeps', () => {
    const config = loadApiConfig({});
    expect(config).toMatchObject({ nodeTimeoutMs: 3000, sweepIntervalMs: 1000 });
    expect(config.redisUrl).toBeUndefined();
    expect(config.clusterSecret).toBeUndefined();
  });

  it('reads REDIS_URL and the API_ node variables', () => {
    expect(
      loadApiConfig({
        REDIS_URL: 'redis://127.0.0.1:6379/0',
        API_NODE_TIMEOUT_MS: '5000',
        API_NODE_SWEEP_MS: '500',
        API_CLUSTER_SECRET: secret,
      }),
    ).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379/0',
      nodeTimeoutMs: 5000,
      sweepIntervalMs: 500,
      clusterSecret: secret,
    });
  });

  it('lists every invalid setting at once', () => {
    let error: unknown;
    try {
      loadApiConfig({
        REDIS_URL: 'http://127.0.0.1:6379',
        API_NODE_TIMEOUT_MS: 'soon',
        API_CLUSTER_SECRET: 'short',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain('redisUrl: must be a redis:// or rediss:// URL');
    expect(message).toContain('nodeTimeoutMs');
    expect(message).toContain('clusterSecret');
  });

  it('refuses a sweep period that is not shorter than the node timeout', () => {
    expect(() => loadApiConfig({ API_NODE_TIMEOUT_MS: '1000', API_NODE_SWEEP_MS: '1000' })).toThrow(
      'API_NODE_SWEEP_MS must be shorter than API_NODE_TIMEOUT_MS',
    );
  });

  it('runs a voice node in process in the embedded profile only, unless told', () => {
    expect(loadApiConfig({}).embeddedVoice).toBe(true);
    expect(loadApiConfig({ API_PROFILE: 'production', API_JWT_SECRET: secret }).embeddedVoice).toBe(
      false,
    );
    expect(loadApiConfig({ API_EMBEDDED_VOICE: 'false' }).embeddedVoice).toBe(false);
  });
});

describe('resolveClusterSecret()', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-secret-'));
    dirs.push(dir);
    return path.join(dir, 'data');
  };

  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('returns the configured secret in either profile', () => {
    for (const profile of ['embedded', 'production'] as const) {
      expect(resolveClusterSecret({ profile, dataDir: tempDir(), clusterSecret: secret })).toBe(
        secret,
      );
    }
  });

  it('refuses to start in production without a secret', () => {
    expect(() =>
      resolveClusterSecret({ profile: 'production', dataDir: tempDir(), clusterSecret: undefined }),
    ).toThrow(ConfigError);
  });

  it('generates an owner-only secret file in the embedded profile and keeps it', () => {
    const dataDir = tempDir();
    const first = resolveClusterSecret({ profile: 'embedded', dataDir, clusterSecret: undefined });
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    const file = path.join(dataDir, CLUSTER_SECRET_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(resolveClusterSecret({ profile: 'embedded', dataDir, clusterSecret: undefined })).toBe(
      first,
    );
  });

  it('replaces a stored secret that is too short', () => {
    const dataDir = tempDir();
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(path.join(dataDir, CLUSTER_SECRET_FILE), 'short\n');
    const secretNow = resolveClusterSecret({
      profile: 'embedded',
      dataDir,
      clusterSecret: undefined,
    });
    expect(secretNow).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.readFileSync(path.join(dataDir, CLUSTER_SECRET_FILE), 'utf8')).toBe(`${secretNow}\n`);
  });
});
