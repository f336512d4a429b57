import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const BIN_DIR = '/usr/lib/postgresql/15/bin';
const SYSTEM_USER = 'postgres';
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** Whether Debian's PostgreSQL 15 server binaries are installed (`npm run setup -- --test`). */
export function postgresInstalled(): boolean {
  return (
    fs.existsSync(path.join(BIN_DIR, 'postgres')) && fs.existsSync(path.join(BIN_DIR, 'initdb'))
  );
}

// PostgreSQL refuses to run as root: when the tests run as root, its commands run as the
// `postgres` system user, which therefore owns the cluster folder. setpriv execs in place, so the
// process signalled is the server itself, and the server is stopped if this process dies.
function asServerUser(command: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [command, args];
  return [
    'setpriv',
    [
      `--reuid=${SYSTEM_USER}`,
      `--regid=${SYSTEM_USER}`,
      '--init-groups',
      '--pdeathsig=SIGINT',
      '--',
      command,
      ...args,
    ],
  ];
}

// Ids of the processes whose parent is `pid`, read from /proc (the server's backends).
function childPids(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        // The command name in parentheses may hold spaces; the parent id follows the state field.
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(fields[1]) === pid ? [Number(entry)] : [];
      } catch {
        // The process ended while the list was read.
        return [];
      }
    });
}

// Signals a process that may have ended since it was listed (a backend whose session closed).
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

// The state letter of a process (R, S, T, Z...), or undefined once it is gone.
function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (processState(pid) !== undefined && processState(pid) !== 'Z') {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A throwaway PostgreSQL 15 server on a free loopback port, in a temporary folder. */
export class TestPostgres {
  /** Connection URL of the `postgres` database. */
  readonly url: string;
  readonly #directory: string;
  readonly #command: [string, string[]];
  #process: ChildProcess;
  #exited: Promise<void>;
  #log = '';
  #databases = 0;

  private constructor(directory: string, port: number, command: [string, string[]]) {
    this.#directory = directory;
    this.#command = command;
    this.url = `postgres://${SYSTEM_USER}@127.0.0.1:${port}/postgres`;
    [this.#process, this.#exited] = this.#spawn();
  }

  #spawn(): [ChildProcess, Promise<void>] {
    const [command, args] = this.#command;
    const server = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    server.stderr!.on('data', (chunk: Buffer) => {
      this.#log = (this.#log + chunk.toString()).slice(-4000);
    });
    return [server, new Promise((resolve) => server.once('exit', () => resolve()))];
  }

  /**
   * Runs initdb in a temporary folder and starts the server; fsync is off, for speed. Commits are
   * asynchronous too unless `crashSafe` is set: a test that kills the server needs what it
   * committed to survive the crash.
   */
  static async start(options: { crashSafe?: boolean } = {}): Promise<TestPostgres> {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-postgres-'));
    fs.chmodSync(directory, 0o700);
    if (process.getuid?.() === 0) {
      const user = spawnSync('id', ['-u', SYSTEM_USER], { encoding: 'utf8' });
      const group = spawnSync('id', ['-g', SYSTEM_USER], { encoding: 'utf8' });
      fs.chownSync(directory, Number(user.stdout.trim()), Number(group.stdout.trim()));
    }
    const dataDir = path.join(directory, 'data');
    const [initCommand, initArgs] = asServerUser(path.join(BIN_DIR, 'initdb'), [
      '--pgdata',
      dataDir,
      '--username',
      SYSTEM_USER,
      '--auth',
      'trust',
      '--encoding',
      'UTF8',
      '--locale',
      'C',
      '--no-sync',
    ]);
    const init = spawnSync(initCommand, initArgs, { encoding: 'utf8', timeout: START_TIMEOUT_MS });
    if (init.status !== 0) {
      fs.rmSync(directory, { recursive: true, force: true });
      throw new Error(`initdb failed (${init.status}): ${init.stderr || init.error?.message}`);
    }
    const port = await freePort();
    const command = asServerUser(path.join(BIN_DIR, 'postgres'), [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${directory}`,
      '-c',
      'fsync=off',
      '-c',
      `synchronous_commit=${options.crashSafe ? 'on' : 'off'}`,
      '-c',
      'full_page_writes=off',
    ]);
    const postgres = new TestPostgres(directory, port, command);
    try {
      await postgres.#waitReady();
    } catch (error) {
      await postgres.stop();
      throw error;
    }
    return postgres;
  }

  /**
   * Freezes the server with SIGSTOP, the postmaster and every backend, as a hung host would: its
   * port still accepts connections, but nothing answers.
   */
  pause(): void {
    // The postmaster first, so that it forks no backend that would escape the freeze.
    for (const pid of [this.#pid(), ...childPids(this.#pid())]) signal(pid, 'SIGSTOP');
  }

  /** Wakes a server frozen by `pause()`; does nothing when the server is not running. */
  resume(): void {
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return;
    for (const pid of [...childPids(this.#pid()), this.#pid()]) signal(pid, 'SIGCONT');
  }

  /** Kills the server with SIGKILL, backends included, as a crash would; `restart()` starts it again. */
  async kill(): Promise<void> {
    const pids = [this.#pid(), ...childPids(this.#pid())];
    for (const pid of pids) signal(pid, 'SIGKILL');
    await this.#exited;
    // The backends are gone too before a new postmaster may take the data folder.
    for (const pid of pids) await waitForExit(pid);
  }

  /** Starts the server again on the same port and data after `kill()`; it recovers from its WAL. */
  async restart(): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      throw new Error('the server is still running');
    }
    [this.#process, this.#exited] = this.#spawn();
    await this.#waitReady();
  }

  #pid(): number {
    const pid = this.#process.pid;
    if (pid === undefined || this.#process.exitCode !== null || this.#process.signalCode !== null) {
      throw new Error('the server is not running');
    }
    return pid;
  }

  /** Creates an empty database and resolves with its URL. */
  async createDatabase(): Promise<string> {
    const name = `hearth_test_${++this.#databases}`;
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return this.url.replace(/\/postgres$/, `/${name}`);
  }

  /** Stops the server (fast shutdown) and deletes its folder. */
  async stop(): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      // A server a failed test left frozen could not act on the shutdown signal.
      this.resume();
      // SIGINT is PostgreSQL's fast shutdown: sessions are disconnected, nothing waits for them.
      this.#process.kill('SIGINT');
      const stopped = await Promise.race([
        this.#exited.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STOP_TIMEOUT_MS)),
      ]);
      if (!stopped) {
        this.#process.kill('SIGKILL');
        await this.#exited;
      }
    }
    fs.rmSync(this.#directory, { recursive: true, force: true });
  }

  async #waitReady(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (this.#process.exitCode !== null) {
        throw new Error(`postgres exited with ${this.#process.exitCode}: ${this.#log}`);
      }
      const client = new pg.Client({ connectionString: this.url });
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => undefined);
      }
      if (Date.now() > deadline) throw new Error(`postgres did not start: ${this.#log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
