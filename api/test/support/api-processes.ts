import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { z } from 'zod';
import type { nodeToApiMessageSchema } from '@hearth/protocol';

// Processes for tests and benchmarks that kill an api or a node the hard way.
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Runs a TypeScript entry point of the repository (`node --import tsx <script>`) with extra env. */
export function spawnTsx(script: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Stops a process with SIGTERM, and SIGKILL after 5 s; resolves once it exited. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Kills a process with SIGKILL, as a crash would, and resolves once it exited. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

const readySchema = z.object({ baseUrl: z.url() });

/**
 * Starts `api-process.ts` (the api with its embedded voice node on PostgreSQL) on `port` and
 * resolves once it listens.
 */
export async function startApiProcess(options: {
  databaseUrl: string;
  port: number;
  clusterSecret: string;
  adminToken: string;
  nodeTimeoutMs: number;
}): Promise<ChildProcess> {
  const child = spawnTsx('api/test/support/api-process.ts', {
    HEARTH_TEST_DATABASE_URL: options.databaseUrl,
    HEARTH_TEST_PORT: String(options.port),
    HEARTH_TEST_CLUSTER_SECRET: options.clusterSecret,
    HEARTH_TEST_ADMIN_TOKEN: options.adminToken,
    HEARTH_TEST_NODE_TIMEOUT_MS: String(options.nodeTimeoutMs),
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    let line = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      line += chunk.toString();
      if (line.includes('\n')) {
        readySchema.parse(JSON.parse(line.split('\n')[0]!));
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`the api exited with ${code}: ${output}`)));
  });
  return child;
}

/**
 * A voice node that registers by hand with one open session (Dee in "hall") and never comes back
 * once its socket is gone: the rows it leaves open are a dead node's.
 */
export async function connectDoomedNode(
  baseUrl: string,
  clusterSecret: string,
): Promise<WebSocket> {
  const socket = new WebSocket(`${baseUrl.replace('http', 'ws')}/ws/nodes`, {
    headers: { authorization: `Cluster ${clusterSecret}` },
  });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const send = (message: z.input<typeof nodeToApiMessageSchema>) =>
    socket.send(JSON.stringify(message));
  send({
    type: 'register',
    registration: { id: 'node-doomed', kind: 'voice', limits: {} },
    rtpCapabilities: { codecs: [], headerExtensions: [] },
  });
  send({ type: 'replay', sessions: [], done: true });
  send({
    type: 'sessionOpened',
    peerId: crypto.randomUUID(),
    channel: 'hall',
    userId: 'guest:Dee',
    displayName: 'Dee',
  });
  return socket;
}
