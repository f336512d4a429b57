import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A voice-sfu node running as its own process, as it would on another host. */
export interface VoiceNodeProcess {
  /** The id it registered under. */
  id: string;
  /** Its signaling and metrics port. */
  port: number;
  /** The process. */
  child: ChildProcess;
  /** Everything it logged, for failure reports. */
  output: () => string;
  /** Kills it the hard way, as a crashed host would go. */
  kill(): Promise<void>;
  /** Stops it cleanly. */
  stop(): Promise<void>;
}

/** Finds a free loopback TCP port. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** True when `port` can be bound on `host` for UDP and for TCP right now. */
export async function portFree(host: string, port: number): Promise<boolean> {
  const udp = await new Promise<boolean>((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
  if (!udp) return false;
  return new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * A run of `count` ports free on both loopback addresses: a voice node's WebRtcServers bind them
 * on `nodeHost` and the impairment relays in front of them on `relayHost`, where pages reach them.
 */
export async function freeRelayedRtcPorts(
  nodeHost: string,
  relayHost: string,
  count = 1,
): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    let free = true;
    for (let index = 0; index < count && free; index++) {
      free = (await portFree(nodeHost, base + index)) && (await portFree(relayHost, base + index));
    }
    if (free) return base;
  }
  throw new Error('no run of RTC ports free on loopback for a voice node and its relays');
}

/**
 * Starts `voice-sfu/src/main.ts` on loopback and waits until its HTTP server answers. The port is
 * a free one unless given: pages may connect only to origins the api's CSP lists
 * (API_ALLOWED_ORIGINS), so a browser test picks the nodes' ports before starting the api.
 */
export async function startVoiceNodeProcess(options: {
  id: string;
  apiUrl: string;
  clusterSecret: string;
  maxParticipants?: number;
  port?: number;
  /** More VOICE_* settings. */
  env?: Record<string, string>;
}): Promise<VoiceNodeProcess> {
  const port = options.port ?? (await freePort());
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'voice-sfu/src/main.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      VOICE_NODE_ID: options.id,
      VOICE_PORT: String(port),
      VOICE_API_URL: options.apiUrl,
      VOICE_CLUSTER_SECRET: options.clusterSecret,
      VOICE_WORKERS: '1',
      VOICE_RTC_BASE_PORT: '0',
      VOICE_HEARTBEAT_MS: '300',
      VOICE_LOG_LEVEL: process.env.VOICE_LOG_LEVEL ?? 'warn',
      ...(options.maxParticipants
        ? { VOICE_MAX_PARTICIPANTS: String(options.maxParticipants) }
        : {}),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`voice node ${options.id} exited:\n${output}`);
    const healthy = await fetch(`http://127.0.0.1:${port}/health`)
      .then((response) => response.ok)
      .catch(() => false);
    if (healthy) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`voice node ${options.id} did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    id: options.id,
    port,
    child,
    output: () => output,
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
