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
  readonly #process: ChildProcess;
  readonly #directory: string;
  readonly #exited: Promise<void>;
  #databases = 0;

  private constructor(process: ChildProcess, directory: string, port: number) {
    this.#process = process;
    this.#directory = directory;
    this.url = `postgres://${SYSTEM_USER}@127.0.0.1:${port}/postgres`;
    this.#exited = new Promise((resolve) => process.once('exit', () => resolve()));
  }

  /** Runs initdb in a temporary folder and starts the server; fsync is off, for speed. */
  static async start(): Promise<TestPostgres> {
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
    const [command, args] = asServerUser(path.join(BIN_DIR, 'postgres'), [
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
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ]);
    const server = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    server.stderr!.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
    });
    const postgres = new TestPostgres(server, directory, port);
    try {
      await postgres.#waitReady(() => log);
    } catch (error) {
      await postgres.stop();
      throw error;
    }
    return postgres;
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

  async #waitReady(log: () => string): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (this.#process.exitCode !== null) {
        throw new Error(`postgres exited with ${this.#process.exitCode}: ${log()}`);
      }
      const client = new pg.Client({ connectionString: this.url });
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => undefined);
      }
      if (Date.now() > deadline) throw new Error(`postgres did not start: ${log()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
