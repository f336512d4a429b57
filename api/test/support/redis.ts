import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A redis-server started for a test, on loopback, with persistence off. */
export interface TestRedis {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Its port. */
  readonly port: number;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
  /** Freezes the server with SIGSTOP: connections stay open, nothing answers. */
  pause(): void;
  /** Wakes a server frozen by `pause()`. */
  resume(): void;
  /** Kills the server with SIGKILL, as a crash would; `restart()` starts it again. */
  kill(): Promise<void>;
  /**
   * Starts a killed server again on the same port and folder; with `persistent` it reloads what
   * it held from its append-only file.
   */
  restart(): Promise<void>;
}

const REDIS_SERVER = '/usr/bin/redis-server';
const START_TIMEOUT_MS = 10_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForReady(child: ChildProcess, output: () => string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`redis-server did not start in time:\n${output()}`));
    }, START_TIMEOUT_MS);
    const onData = () => {
      if (output().includes('Ready to accept connections')) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`redis-server exited with ${code} before it was ready:\n${output()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

async function startOnce(persistent: boolean): Promise<TestRedis> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    // Each write reaches the append-only file before Redis answers it, so a killed server
    // restarts with everything it acknowledged.
    '--appendonly',
    persistent ? 'yes' : 'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--logfile',
    '',
  ];
  const launch = async () => {
    const child = spawn(REDIS_SERVER, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await waitForReady(child, () => log);
    } catch (error) {
      child.kill('SIGKILL');
      await exited;
      throw error;
    }
    return { child, exited };
  };
  let server: Awaited<ReturnType<typeof launch>>;
  try {
    server = await launch();
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const running = () => server.child.exitCode === null && server.child.signalCode === null;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (running()) {
        // A server a failed test left frozen could not act on SIGTERM.
        server.child.kill('SIGCONT');
        server.child.kill('SIGTERM');
        await server.exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
    pause() {
      server.child.kill('SIGSTOP');
    },
    resume() {
      if (running()) server.child.kill('SIGCONT');
    },
    async kill() {
      server.child.kill('SIGKILL');
      await server.exited;
    },
    async restart() {
      if (running()) throw new Error('redis-server is still running');
      server = await launch();
    },
  };
}

/**
 * Starts Debian's redis-server on a free loopback port in a temporary folder; with `persistent`
 * its data survives `kill()` and `restart()`. Another process may take the port between
 * choosing and binding it, so a failed start is tried again twice.
 */
export async function startRedis(options: { persistent?: boolean } = {}): Promise<TestRedis> {
  if (!fs.existsSync(REDIS_SERVER)) {
    throw new Error(`${REDIS_SERVER} is missing; install the Debian package redis-server`);
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(options.persistent ?? false);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}
