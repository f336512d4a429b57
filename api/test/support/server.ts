import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { WebSocket } from 'ws';
import { serverMessageSchema, type ServerMessage } from '@hearth/protocol';
import { createLogger } from '@hearth/server-common';
import { voiceConfig, type VoiceConfig, type VoiceNode } from '@hearth/voice-sfu';
import { apiConfig } from '../../src/config';
import { startPlatform } from '../../src/platform';
import type { StreamService, StreamUrls } from '../../src/streams/stream-service';
import type { IngestConfig, IngestNode, ObjectStorage } from '@hearth/stream-ingest';

/** A running api on an ephemeral loopback port. */
export interface TestApi {
  /** `http://127.0.0.1:<port>`. */
  baseUrl: string;
  /** The in-process voice node behind it. */
  voice: VoiceNode;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** The ingest node, when the test asked for one. */
  ingest: IngestNode | undefined;
  /** Folder served as the web app. */
  webDistDir: string;
  /** Stops the server and the voice node. */
  close(): Promise<void>;
}

/** Starts the api with an in-process voice node; the web app folder is a temporary one unless given. */
export async function startTestApi(
  options: {
    api?: Parameters<typeof apiConfig>[0];
    voice?: Partial<VoiceConfig>;
    ingest?: { config: IngestConfig; storage: ObjectStorage };
    streamUrls?: StreamUrls;
  } = {},
): Promise<TestApi> {
  const tempDistDir = options.api?.webDistDir
    ? undefined
    : fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-web-'));
  const config = apiConfig({ webDistDir: tempDistDir, logLevel: 'error', ...options.api });
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
  });
  const { app, voice, streams, ingest } = platform;
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    voice,
    streams,
    ingest,
    webDistDir: config.webDistDir,
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

  /** Opens a connection to `/ws/voice` as a named guest. */
  static async connect(
    baseUrl: string,
    name: string,
    headers: Record<string, string> = {},
  ): Promise<TestSignalingClient> {
    const url = `${baseUrl.replace('http', 'ws')}/ws/voice?name=${encodeURIComponent(name)}`;
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
