import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { WebSocket } from 'ws';
import {
  serverMessageSchema,
  voiceJoinSchema,
  type ServerMessage,
  type VoiceJoin,
} from '@hearth/protocol';
import { createLogger } from '@hearth/server-common';
import { voiceConfig, type VoiceConfig, type VoiceNode } from '@hearth/voice-sfu';
import { apiConfig } from '../../src/config';
import { PgliteClient } from '../../src/db/pglite-client';
import type { SqlClient } from '../../src/db/sql-client';
import type { Stores } from '../../src/db/stores';
import { startPlatform } from '../../src/platform';
import { TEST_ADMIN_TOKEN, ensureChannel, guestSession } from './sessions';
import { migratedTemplate } from './pglite-templates';
import type { StreamService, StreamUrls } from '../../src/streams/stream-service';
import type { IngestConfig, IngestNode, ObjectStorage } from '@hearth/stream-ingest';

/** A running api on an ephemeral loopback port. */
export interface TestApi {
  /** `http://127.0.0.1:<port>`. */
  baseUrl: string;
  /** The in-process voice node behind it, unless the test turned it off. */
  voice: VoiceNode | undefined;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** The ingest node, when the test asked for one. */
  ingest: IngestNode | undefined;
  /** Folder served as the web app. */
  webDistDir: string;
  /** The api's database (an in-memory PGlite copy of a migrated template). */
  database: SqlClient;
  /** Every store on it. */
  stores: Stores;
  /** Stops the server and the voice node. */
  close(): Promise<void>;
}

/** JWT signing secret of every test api. */
export const TEST_JWT_SECRET = 'test-jwt-secret-that-is-long-enough-0123456789';

/** A fresh in-memory PGlite database with the current schema. */
export async function openTestDatabase(): Promise<PgliteClient> {
  return PgliteClient.open({ loadDataDir: await migratedTemplate() });
}

/**
 * Starts the api with an in-process voice node on a fresh in-memory database (or the one given);
 * the web app folder is a temporary one unless given. The auth routes' rate limit is lifted
 * unless the test sets it.
 */
export async function startTestApi(
  options: {
    api?: Parameters<typeof apiConfig>[0];
    voice?: Partial<VoiceConfig>;
    ingest?: { config: IngestConfig; storage: ObjectStorage };
    streamUrls?: StreamUrls;
    /** The database to use instead of a fresh in-memory PGlite one; the api closes it. */
    database?: SqlClient;
    /** Port to listen on; a free one when left out. */
    port?: number;
  } = {},
): Promise<TestApi> {
  const tempDistDir = options.api?.webDistDir
    ? undefined
    : fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-web-'));
  const config = apiConfig({
    webDistDir: tempDistDir,
    logLevel: 'error',
    jwtSecret: TEST_JWT_SECRET,
    adminToken: TEST_ADMIN_TOKEN,
    authRatePerSecond: '1000',
    ...options.api,
  });
  const logger = createLogger('api-test', { level: 'error' });
  const registry = new Registry();
  const platform = await startPlatform({
    config,
    voiceConfig: voiceConfig({ numWorkers: 1, rtcBasePort: 0, ...options.voice }),
    logger,
    registry,
    streamUrls: options.streamUrls ?? {
      rtmpUrl: 'rtmp://127.0.0.1:1935/live',
      playbackBaseUrl: 'http://127.0.0.1:8081',
    },
    ingest: options.ingest,
    database: options.database ?? (await openTestDatabase()),
  });
  const { app, voice, streams, ingest, database, stores } = platform;
  const server = app.listen(options.port ?? 0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    voice,
    streams,
    ingest,
    webDistDir: config.webDistDir,
    database,
    stores,
    async close() {
      await platform.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (tempDistDir) fs.rmSync(tempDistDir, { recursive: true, force: true });
    },
  };
}

/** A signaling client speaking the protocol over a real WebSocket, recording what arrives. */
export class TestSignalingClient {
  /** The socket. */
  readonly socket: WebSocket;
  /** Every parsed server message, in order. */
  readonly messages: ServerMessage[] = [];
  readonly #closeCode: Promise<number>;
  #nextId = 1;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    this.#closeCode = new Promise((resolve) => socket.once('close', (code) => resolve(code)));
    socket.on('message', (raw) =>
      this.messages.push(serverMessageSchema.parse(JSON.parse(String(raw)))),
    );
  }

  /**
   * Asks the api for a place in `channel` (created if missing) as a named guest, or as whoever
   * `auth` authorizes (`POST /api/voice/join`), and opens the signaling WebSocket it points to
   * with the join token.
   */
  static async connect(
    baseUrl: string,
    name: string,
    options: {
      channel?: string;
      headers?: Record<string, string>;
      auth?: Record<string, string>;
      spectate?: boolean;
    } = {},
  ): Promise<TestSignalingClient> {
    const placement = await requestJoin(baseUrl, name, options.channel ?? 'lobby', options.auth, {
      spectate: options.spectate,
    });
    const url = new URL(placement.url, baseUrl.replace('http', 'ws'));
    url.searchParams.set('token', placement.token);
    return TestSignalingClient.open(url.href, options.headers);
  }

  /** Opens a signaling WebSocket at a URL as it is. */
  static async open(
    url: string,
    headers: Record<string, string> = {},
  ): Promise<TestSignalingClient> {
    const socket = new WebSocket(url, { headers });
    const client = new TestSignalingClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  /** Sends a raw frame. */
  sendRaw(text: string): void {
    this.socket.send(text);
  }

  /** Sends a request and resolves with its response message. */
  async request(method: string, data: unknown = {}): Promise<ServerMessage> {
    const id = this.#nextId++;
    this.socket.send(JSON.stringify({ kind: 'request', id, method, data }));
    return this.waitFor((message) => message.kind === 'response' && message.id === id);
  }

  /** Resolves with the first recorded message matching, waiting up to `timeoutMs`. */
  async waitFor(
    match: (message: ServerMessage) => boolean,
    timeoutMs = 5000,
  ): Promise<ServerMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error('timed out waiting for a signaling message');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Resolves with the close code once the server closes the socket. */
  closed(): Promise<number> {
    return this.#closeCode;
  }

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }
}

/**
 * `POST /api/voice/join` as a new guest session under `name` (or with `auth`), after creating the
 * channel if it is missing, as a spectator with `spectate`; throws with the api's answer unless
 * it placed us.
 */
export async function requestJoin(
  baseUrl: string,
  name: string,
  channel: string,
  auth?: Record<string, string>,
  options: { spectate?: boolean } = {},
): Promise<VoiceJoin> {
  await ensureChannel(baseUrl, channel);
  const response = await fetch(`${baseUrl}/api/voice/join`, {
    method: 'POST',
    headers: {
      ...(auth ?? (await guestSession(baseUrl, name))),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ channel, ...(options.spectate ? { spectate: true } : {}) }),
  });
  const body: unknown = await response.json();
  if (response.status !== 200) {
    throw new Error(`join refused with ${response.status}: ${JSON.stringify(body)}`);
  }
  return voiceJoinSchema.parse(body);
}
