import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { voiceJoinSchema } from '@hearth/protocol';
import { createLogger } from '@hearth/server-common';
import { isRunning } from '@hearth/cdn-config';
import { CoturnProcess, coturnAvailable, renderCoturnConfig } from '../../src/turn/coturn-process';
import { turnCredentials } from '../../src/turn/credentials';
import { EmbeddedTurn } from '../../src/turn/embedded-turn';
import { turnAllocate } from '../../src/turn/turn-client';
import { ensureChannel, guestSession, sendJson } from '../support/sessions';
import { startTestApi } from '../support/server';

const here = path.dirname(fileURLToPath(import.meta.url));
const SECRET = 'coturn-test-secret-0123456789abcdef0123456789';
const RELAY_PORTS = { min: 61200, max: 61299 };
const logger = createLogger('coturn-test', { level: 'silent' });

let coturn: CoturnProcess;
// How the config file of `coturn` was written: its mode, and whether it held the secret.
let writtenConfig: { mode: unknown; holdsSecret: boolean } | undefined;

beforeAll(async () => {
  expect(coturnAvailable()).toBe(true);
  const write = vi.spyOn(fs, 'writeFileSync');
  try {
    coturn = await CoturnProcess.start(
      { listenIp: '127.0.0.1', realm: 'hearth-test', secret: SECRET, relayPorts: RELAY_PORTS },
      logger,
    );
    const call = write.mock.calls.find(([file]) => file === coturn.files.configPath);
    writtenConfig = call && {
      mode: (call[2] as { mode?: number } | undefined)?.mode,
      holdsSecret: String(call[1]).includes(`static-auth-secret=${SECRET}\n`),
    };
  } finally {
    write.mockRestore();
  }
});

afterAll(async () => {
  await coturn?.stop();
});

function allocate(
  credentials: { username: string; credential: string },
  transport: 'udp' | 'tcp' = 'udp',
) {
  return turnAllocate({
    host: '127.0.0.1',
    port: coturn.settings.port,
    transport,
    username: credentials.username,
    password: credentials.credential,
  });
}

describe('renderCoturnConfig()', () => {
  const files = {
    directory: '/tmp/c',
    configPath: '/tmp/c/turnserver.conf',
    pidFile: '/tmp/c/turnserver.pid',
    userDb: '/tmp/c/turndb',
  };

  it('renderCoturnConfig() allows REST credentials only, on one address, without TLS, CLI or TCP relays', () => {
    const settings = { listenIp: '127.0.0.1', port: 3478, realm: 'hearth', secret: 's3cret' };
    expect(renderCoturnConfig(settings, files)).toMatchInlineSnapshot(`
      "listening-ip=127.0.0.1
      listening-port=3478
      relay-ip=127.0.0.1
      realm=hearth
      use-auth-secret
      static-auth-secret=s3cret
      fingerprint
      no-tls
      no-dtls
      no-cli
      no-tcp-relay
      no-multicast-peers
      no-software-attribute
      log-file=stdout
      simple-log
      pidfile=/tmp/c/turnserver.pid
      userdb=/tmp/c/turndb
      "
    `);
    const loopback = renderCoturnConfig(
      { ...settings, relayPorts: { min: 50000, max: 50099 }, allowLoopbackPeers: true },
      files,
    );
    expect(
      loopback.split('\n').filter((line) => !renderCoturnConfig(settings, files).includes(line)),
    ).toEqual(['min-port=50000', 'max-port=50099', 'allow-loopback-peers']);
  });

  it('renderCoturnConfig() refuses a value that could start another setting', () => {
    const settings = { listenIp: '127.0.0.1', port: 3478, realm: 'hearth', secret: 's' };
    for (const bad of [{ secret: 'a\nno-auth' }, { realm: 'a b' }, { secret: '' }]) {
      expect(() => renderCoturnConfig({ ...settings, ...bad }, files)).toThrow(TypeError);
    }
  });
});

describe('coturn with TURN REST credentials', () => {
  it('accepts credentials made from its secret, over UDP and TCP, relaying from its range', async () => {
    const credentials = turnCredentials({ secret: SECRET, user: 'guest:valid', ttlSeconds: 600 });
    for (const transport of ['udp', 'tcp'] as const) {
      const answer = await allocate(credentials, transport);
      expect(answer.ok, transport).toBe(true);
      if (!answer.ok) continue;
      expect(answer.relayed.address).toBe('127.0.0.1');
      expect(answer.relayed.port).toBeGreaterThanOrEqual(RELAY_PORTS.min);
      expect(answer.relayed.port).toBeLessThanOrEqual(RELAY_PORTS.max);
    }
  });

  it('refuses a wrong password, another secret, a stretched expiry and expired credentials with 401', async () => {
    const valid = turnCredentials({ secret: SECRET, user: 'guest:x', ttlSeconds: 600 });
    const stretched = valid.username.replace(/^\d+/, String(valid.expiresAt + 86_400));
    const refused = [
      { username: valid.username, credential: `${valid.credential}x` },
      turnCredentials({ secret: `${SECRET}-other`, user: 'guest:x', ttlSeconds: 600 }),
      { username: stretched, credential: valid.credential },
      // Valid for 60 s, issued two minutes ago.
      turnCredentials({
        secret: SECRET,
        user: 'guest:x',
        ttlSeconds: 60,
        now: Date.now() - 120_000,
      }),
    ];
    for (const [index, credentials] of refused.entries()) {
      expect(await allocate(credentials), `case ${index}`).toEqual({
        ok: false,
        code: 401,
        reason: 'Unauthorized',
      });
    }
    // The same server still serves the right credentials afterwards.
    expect((await allocate(valid)).ok).toBe(true);
  });

  it('the secret is in no argv and no log line, and on disk only owner-only until coturn serves', async () => {
    const argv = fs.readFileSync(`/proc/${coturn.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    expect(argv).toEqual(['/usr/bin/turnserver', '-c', coturn.files.configPath]);
    expect(argv.join(' ')).not.toContain(SECRET);
    expect(fs.existsSync(coturn.files.configPath)).toBe(false);
    expect(fs.readdirSync(coturn.files.directory).join(' ')).not.toContain('.conf');
    expect(coturn.log()).toMatch(/TURN Server/);
    expect(coturn.log()).not.toContain(SECRET);
    expect(writtenConfig).toEqual({ mode: 0o600, holdsSecret: true });
  });

  it('hostile datagrams on its port do not stop it from serving', async () => {
    const socket = dgram.createSocket('udp4');
    for (let index = 0; index < 200; index++) {
      const junk = Buffer.alloc(20 + (index % 200), index);
      await new Promise((resolve) => socket.send(junk, coturn.settings.port, '127.0.0.1', resolve));
    }
    socket.close();
    const credentials = turnCredentials({ secret: SECRET, user: 'after-junk', ttlSeconds: 600 });
    expect((await allocate(credentials)).ok).toBe(true);
  });

  it('a voice join hands out credentials this coturn accepts', async () => {
    const api = await startTestApi({
      api: { turnUrls: coturn.urls.join(','), turnSecret: SECRET, turnTtlSeconds: '120' },
    });
    try {
      await ensureChannel(api.baseUrl, 'turn-join');
      const guest = await guestSession(api.baseUrl, 'Tess');
      const response = await sendJson(
        `${api.baseUrl}/api/voice/join`,
        'POST',
        { channel: 'turn-join' },
        guest,
      );
      expect(response.status).toBe(200);
      const { iceServers } = voiceJoinSchema.parse(await response.json());
      expect(iceServers).toHaveLength(1);
      const [server] = iceServers;
      expect(server!.urls).toEqual(coturn.urls);
      const expiry = Number(server!.username!.split(':')[0]);
      expect(expiry - Date.now() / 1000).toBeGreaterThan(110);
      expect(expiry - Date.now() / 1000).toBeLessThanOrEqual(120);
      const answer = await allocate({
        username: server!.username!,
        credential: server!.credential!,
      });
      expect(answer.ok).toBe(true);
    } finally {
      await api.close();
    }
  });

  it('a join answers no TURN servers when none are configured', async () => {
    const api = await startTestApi();
    try {
      await ensureChannel(api.baseUrl, 'no-turn');
      const guest = await guestSession(api.baseUrl, 'Nat');
      const response = await sendJson(
        `${api.baseUrl}/api/voice/join`,
        'POST',
        { channel: 'no-turn' },
        guest,
      );
      expect(response.status).toBe(200);
      expect(((await response.json()) as { iceServers: unknown }).iceServers).toEqual([]);
    } finally {
      await api.close();
    }
  });
});

describe('coturn process lifetime', () => {
  it('start() on a port something else holds is an error, not a TURN server', async () => {
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => blocker.bind(0, '127.0.0.1', resolve));
    const { port } = blocker.address();
    try {
      await expect(
        CoturnProcess.start({ listenIp: '127.0.0.1', port, realm: 'r', secret: SECRET }, logger),
      ).rejects.toThrow(`TURN port 127.0.0.1:${port} is in use by another program`);
    } finally {
      blocker.close();
    }
  });

  it('stop() ends coturn and removes its folder; a second stop() is harmless; no "died" event', async () => {
    const own = await CoturnProcess.start(
      { listenIp: '127.0.0.1', realm: 'r', secret: SECRET },
      logger,
    );
    const died: unknown[] = [];
    own.events.on('died', (exit) => died.push(exit));
    const pid = own.pid;
    await own.stop();
    await own.stop();
    expect(own.exited).toBe(true);
    expect(isRunning(pid)).toBe(false);
    expect(fs.existsSync(own.files.directory)).toBe(false);
    expect(died).toEqual([]);
  });

  it('coturn dies with the process that started it, even when that one is SIGKILLed', async () => {
    const owner = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(here, 'support/start-coturn.ts')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [pid, directory] = await new Promise<[number, string]>((resolve, reject) => {
      owner.stdout!.once('data', (data: Buffer) => {
        const [printedPid, printedDirectory] = String(data).trim().split(' ');
        resolve([Number(printedPid), printedDirectory!]);
      });
      owner.once('exit', () => reject(new Error('the owner exited before starting coturn')));
    });
    expect(isRunning(pid)).toBe(true);
    owner.kill('SIGKILL');
    await expect.poll(() => isRunning(pid), { timeout: 5000 }).toBe(false);
    // Nobody was left to remove its folder; it holds no secret, only the pid file and database.
    expect(fs.readdirSync(directory).sort()).toEqual(['turndb', 'turnserver.pid']);
    fs.rmSync(directory, { recursive: true, force: true });
  });

  it('the embedded coturn is started again on its port with its secret after it is killed', async () => {
    const embedded = (await EmbeddedTurn.start({ port: 0, logger }))!;
    try {
      const firstPid = embedded.pid;
      const port = Number(/:(\d+)\?/.exec(embedded.urls[0]!)![1]);
      process.kill(firstPid, 'SIGKILL');
      await expect.poll(() => embedded.pid !== firstPid, { timeout: 10_000 }).toBe(true);
      expect(isRunning(firstPid)).toBe(false);
      const credentials = turnCredentials({ secret: embedded.secret, user: 'u', ttlSeconds: 60 });
      const answer = await turnAllocate({
        host: '127.0.0.1',
        port,
        username: credentials.username,
        password: credentials.credential,
      });
      expect(answer.ok).toBe(true);
    } finally {
      await embedded.stop();
    }
    expect(isRunning(embedded.pid)).toBe(false);
  });
});
