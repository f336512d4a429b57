import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TypedEmitter, type Logger } from '@hearth/server-common';
import { turnCredentials } from './credentials';
import { turnAllocate } from './turn-client';

/** Debian's coturn binary (package `coturn`). */
export const TURNSERVER_BIN = '/usr/bin/turnserver';
// coturn runs under util-linux's setpriv, which asks the kernel to send it SIGTERM when the
// process that started it dies, even by SIGKILL.
const SETPRIV = '/usr/bin/setpriv';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
// A port found free can be taken before coturn binds it; starting again on a new one fixes that.
const START_ATTEMPTS = 3;
// Lines of coturn's log kept for error messages; the rest is dropped, so memory stays bounded.
const LOG_TAIL_LINES = 60;
const PROBE_INTERVAL_MS = 100;
const PROBE_TIMEOUT_MS = 1000;

/** Settings of one coturn instance. */
export interface CoturnSettings {
  /** Address coturn listens on (UDP and TCP) and relays from. */
  readonly listenIp: string;
  /** Its UDP and TCP port. */
  readonly port: number;
  /** Lowest and highest relay port; coturn's 49152-65535 when left out. */
  readonly relayPorts?: { readonly min: number; readonly max: number };
  /** The realm in its answers. */
  readonly realm: string;
  /** The `static-auth-secret` its TURN REST credentials are checked with. */
  readonly secret: string;
  /**
   * Relays to peers on loopback (`allow-loopback-peers`), which coturn refuses by default: only
   * for a coturn on loopback in front of a voice node on loopback (the embedded profile, tests).
   */
  readonly allowLoopbackPeers?: boolean;
}

/** Files of one coturn instance, all inside a fresh temp folder. */
export interface CoturnFiles {
  /** The folder; removed by `stop()`. */
  readonly directory: string;
  /** The config file, readable by its owner only: it holds the secret until coturn serves. */
  readonly configPath: string;
  /** coturn's pid file. */
  readonly pidFile: string;
  /** coturn's SQLite user database, which it opens even when REST credentials need none. */
  readonly userDb: string;
}

/** Events of a coturn process. */
export type CoturnProcessEvents = {
  /** coturn exited without `stop()` having been called. */
  died: [{ code: number | null; signal: NodeJS.Signals | null }];
};

/** True when Debian's coturn is installed. */
export function coturnAvailable(): boolean {
  try {
    fs.accessSync(TURNSERVER_BIN, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function settingLine(name: string, value: string | number): string {
  // A value with whitespace could start another setting on the next line.
  if (/\s/.test(String(value)) || String(value) === '') {
    throw new TypeError(`coturn setting ${name} must be a non-empty value without whitespace`);
  }
  return `${name}=${value}`;
}

/**
 * The turnserver.conf of one instance: TURN REST credentials only, UDP and TCP on one loopback
 * or host address, no TLS (the embedded profile has no certificate), no admin CLI, no TCP relays,
 * and the log on stdout for the owner to read.
 */
export function renderCoturnConfig(settings: CoturnSettings, files: CoturnFiles): string {
  const lines = [
    settingLine('listening-ip', settings.listenIp),
    settingLine('listening-port', settings.port),
    settingLine('relay-ip', settings.listenIp),
    ...(settings.relayPorts
      ? [
          settingLine('min-port', settings.relayPorts.min),
          settingLine('max-port', settings.relayPorts.max),
        ]
      : []),
    settingLine('realm', settings.realm),
    'use-auth-secret',
    settingLine('static-auth-secret', settings.secret),
    'fingerprint',
    'no-tls',
    'no-dtls',
    // The CLI would listen on 127.0.0.1:5766 without a password; with loopback peers allowed
    // every TURN client could reach it through a relay.
    'no-cli',
    'no-tcp-relay',
    'no-multicast-peers',
    'no-software-attribute',
    ...(settings.allowLoopbackPeers ? ['allow-loopback-peers'] : []),
    'log-file=stdout',
    'simple-log',
    settingLine('pidfile', files.pidFile),
    settingLine('userdb', files.userDb),
  ];
  return `${lines.join('\n')}\n`;
}

function createFiles(): CoturnFiles {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-coturn-'));
  return {
    directory,
    configPath: path.join(directory, 'turnserver.conf'),
    pidFile: path.join(directory, 'turnserver.pid'),
    userDb: path.join(directory, 'turndb'),
  };
}

/** Resolves whether `port` on `host` can be bound for both UDP and TCP right now. */
export async function portIsFree(host: string, port: number): Promise<boolean> {
  const tcp = net.createServer();
  const tcpBound = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen({ host, port, exclusive: true }, () => resolve(true));
  });
  if (tcpBound) await new Promise((resolve) => tcp.close(resolve));
  if (!tcpBound) return false;
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const udpBound = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind({ address: host, port, exclusive: true }, () => resolve(true));
  });
  if (udpBound) await new Promise<void>((resolve) => udp.close(() => resolve()));
  else udp.close();
  return udpBound;
}

async function freePort(host: string): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    });
    const { port } = server.address() as net.AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    if (await portIsFree(host, port)) return port;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A real coturn (Debian's /usr/bin/turnserver) started from a config file in a fresh temp
 * folder, with TURN REST credentials checked against a shared secret. The secret is in that
 * file (mode 0600, removed once coturn serves), never in argv. coturn dies with this process,
 * even when it is SIGKILLed.
 */
export class CoturnProcess {
  /** Exits that `stop()` did not cause. */
  readonly events: TypedEmitter<CoturnProcessEvents>;
  /** The instance's settings, its port included. */
  readonly settings: CoturnSettings;
  /** Its config, pid and database files. */
  readonly files: CoturnFiles;
  readonly #child: ChildProcess;
  readonly #exit: Promise<void>;
  readonly #log: string[] = [];
  #partialLine = '';
  #exited = false;
  #stopping: Promise<void> | undefined;

  private constructor(
    settings: CoturnSettings,
    files: CoturnFiles,
    child: ChildProcess,
    logger: Logger,
  ) {
    this.events = new TypedEmitter((error, event) =>
      logger.error({ err: error, event }, 'coturn listener failed'),
    );
    this.settings = settings;
    this.files = files;
    this.#child = child;
    this.#exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exited = true;
        if (!this.#stopping) this.events.safeEmit('died', { code, signal });
        resolve();
      });
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.#keepLog(chunk));
    }
  }

  /**
   * Starts coturn and resolves once it answers an Allocate with credentials made from its own
   * secret, which shows the answering server is this one. Without `port`, a free one is picked
   * (and another on a collision); a given port that something else holds is an error. `logger`
   * reports exceptions of event listeners.
   */
  static async start(
    settings: Omit<CoturnSettings, 'port'> & { port?: number },
    logger: Logger,
  ): Promise<CoturnProcess> {
    const attempts = settings.port === undefined ? START_ATTEMPTS : 1;
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const port = settings.port ?? (await freePort(settings.listenIp));
      if (settings.port !== undefined && !(await portIsFree(settings.listenIp, port))) {
        throw new Error(`TURN port ${settings.listenIp}:${port} is in use by another program`);
      }
      const full: CoturnSettings = { ...settings, port };
      const files = createFiles();
      let child: ChildProcess;
      try {
        fs.writeFileSync(files.configPath, renderCoturnConfig(full, files), { mode: 0o600 });
        child = spawn(
          SETPRIV,
          ['--pdeathsig', 'SIGTERM', '--', TURNSERVER_BIN, '-c', files.configPath],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
      } catch (error) {
        fs.rmSync(files.directory, { recursive: true, force: true });
        throw error;
      }
      const coturn = new CoturnProcess(full, files, child, logger);
      const refusal = await coturn.#waitUntilServing();
      if (refusal === undefined) {
        // coturn read its config at start and never reads it again: the secret leaves the disk.
        fs.rmSync(files.configPath, { force: true });
        return coturn;
      }
      const log = coturn.log();
      await coturn.stop();
      lastError = new Error(`coturn did not start: ${refusal}\n${log}`);
    }
    throw lastError ?? new Error('coturn did not start');
  }

  // Resolves with nothing once this coturn allocates, or with why it does not.
  async #waitUntilServing(): Promise<string | undefined> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && !this.#exited) {
      const { username, credential } = turnCredentials({
        secret: this.settings.secret,
        user: 'hearth-start-probe',
        ttlSeconds: 60,
      });
      const answer = await turnAllocate({
        host: this.settings.listenIp,
        port: this.settings.port,
        username,
        password: credential,
        timeoutMs: PROBE_TIMEOUT_MS,
      }).catch(() => undefined);
      if (answer?.ok) return this.#exited ? 'it exited' : undefined;
      if (answer) return `port ${this.settings.port} answered ${answer.code} ${answer.reason}`;
      await delay(PROBE_INTERVAL_MS);
    }
    return this.#exited ? 'it exited' : `no answer within ${START_TIMEOUT_MS} ms`;
  }

  #keepLog(chunk: string): void {
    const lines = (this.#partialLine + chunk).split('\n');
    this.#partialLine = lines.pop() ?? '';
    // A line without an end is cut so that one endless line cannot grow without bound.
    if (this.#partialLine.length > 1024) this.#partialLine = this.#partialLine.slice(0, 1024);
    this.#log.push(...lines.filter(Boolean));
    this.#log.splice(0, Math.max(0, this.#log.length - LOG_TAIL_LINES));
  }

  /** The TURN URLs of this instance, UDP then TCP. */
  get urls(): string[] {
    const { listenIp, port } = this.settings;
    const host = net.isIPv6(listenIp) ? `[${listenIp}]` : listenIp;
    return [`turn:${host}:${port}?transport=udp`, `turn:${host}:${port}?transport=tcp`];
  }

  /** Process id of coturn. */
  get pid(): number {
    if (this.#child.pid === undefined) throw new Error('coturn has no process id');
    return this.#child.pid;
  }

  /** True once coturn has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The last lines coturn logged. */
  log(): string {
    return this.#log.join('\n');
  }

  /** Stops coturn (SIGTERM, then SIGKILL) and removes its folder. Safe to call more than once. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (!this.#exited) {
      this.#child.kill('SIGTERM');
      const stopped = await Promise.race([
        this.#exit.then(() => true),
        delay(STOP_TIMEOUT_MS).then(() => false),
      ]);
      if (!stopped) {
        this.#child.kill('SIGKILL');
        await this.#exit;
      }
    }
    fs.rmSync(this.files.directory, { recursive: true, force: true });
  }
}
