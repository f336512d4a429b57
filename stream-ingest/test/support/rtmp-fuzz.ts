import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { SeededRandom } from '../../../e2e/support/impairment/random';
import { publishLikeObs } from '../../../e2e/support/obs';
import {
  HANDSHAKE_BLOCK,
  MessageType,
  chunk,
  chunkList,
  closed,
  connectTcp,
  handshake,
  parseClientStream,
  setChunkSize,
  type RtmpMessage,
} from './rtmp-wire';

/** The ways a message of a real session is spoiled. */
export const MUTATIONS = [
  'flip_bytes',
  'truncate',
  'wrong_amf_type',
  'drop_fields',
  'absurd_length',
  'chunk_size_change',
  'interleave',
  'garbage',
] as const;

/** One way a message is spoiled. */
export type Mutation = (typeof MUTATIONS)[number];

/** What one hostile connection sends. */
export interface HostileConnection {
  /** Bytes to write, in order. */
  readonly bytes: Buffer;
  /** Malformed or truncated messages among them. */
  readonly malformed: number;
  /** The client closes the connection itself right after writing (an abrupt close). */
  readonly abruptClose: boolean;
}

// AMF0 type markers, valid and not (0x04, 0x0d and 0x0e are reserved or unsupported).
const AMF_MARKERS = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x10, 0x11,
];
const ODD_CHUNK_SIZES = [0, 1, 2, 127, 128, 4096, 65536, 0x7fffffff, 0xffffffff];

/**
 * Builds hostile RTMP connections by mutating the messages of a real publisher's session: bad
 * handshakes, flipped bytes, wrong AMF types, missing fields, truncated bodies, absurd declared
 * lengths, chunk-size changes, interleaved chunk streams, random garbage and abrupt closes.
 */
export class RtmpFuzzer {
  readonly #random: SeededRandom;
  readonly #session: readonly RtmpMessage[];

  constructor(seed: number, session: readonly RtmpMessage[]) {
    if (session.length === 0) throw new TypeError('the recorded session holds no message');
    this.#random = new SeededRandom(seed);
    this.#session = session;
  }

  /** The next hostile connection, with `messages` messages after the handshake. */
  next(messages: number): HostileConnection {
    const random = this.#random;
    const parts: Buffer[] = [this.#handshake()];
    let malformed = parts[0]!.length === 1 + 2 * HANDSHAKE_BLOCK ? 0 : 1;
    let chunkSize = 128;
    for (let index = 0; index < messages; index++) {
      const original = this.#session[index % this.#session.length]!;
      if (random.next() < 0.25) {
        parts.push(chunk(original, chunkSize));
        continue;
      }
      malformed += 1;
      const mutation = random.pick(MUTATIONS);
      const mutated = this.#mutate(original, mutation, chunkSize);
      parts.push(mutated.bytes);
      chunkSize = mutated.chunkSize;
    }
    const abruptClose = random.next() < 0.3;
    let bytes = Buffer.concat(parts);
    if (abruptClose) bytes = bytes.subarray(0, random.int(bytes.length + 1));
    return { bytes, malformed, abruptClose };
  }

  #handshake(): Buffer {
    const random = this.#random;
    const valid = handshake();
    const roll = random.next();
    if (roll < 0.85) return valid;
    if (roll < 0.9) return Buffer.concat([Buffer.from([random.int(256)]), valid.subarray(1)]);
    if (roll < 0.95) return valid.subarray(0, random.int(valid.length));
    return random.bytes(random.int(4000));
  }

  #mutate(
    message: RtmpMessage,
    mutation: Mutation,
    chunkSize: number,
  ): { bytes: Buffer; chunkSize: number } {
    const random = this.#random;
    const payload = Buffer.from(message.payload);
    switch (mutation) {
      case 'flip_bytes': {
        for (let flips = 1 + random.int(8); flips > 0 && payload.length > 0; flips--) {
          const at = random.int(payload.length);
          payload[at] = payload[at]! ^ (1 << random.int(8));
        }
        return { bytes: chunk({ ...message, payload }, chunkSize), chunkSize };
      }
      case 'truncate': {
        const cut = payload.subarray(0, random.int(payload.length + 1));
        return { bytes: chunk({ ...message, payload: cut }, chunkSize), chunkSize };
      }
      case 'wrong_amf_type': {
        if (payload.length > 0)
          payload[random.int(Math.min(payload.length, 64))] = random.pick(AMF_MARKERS);
        const type = random.pick([MessageType.command, MessageType.data, 17, 15]);
        return { bytes: chunk({ ...message, type, payload }, chunkSize), chunkSize };
      }
      case 'drop_fields': {
        // Keeps the command name and little else: a `connect` or `publish` with missing fields.
        const kept = payload.subarray(0, Math.min(payload.length, 3 + random.int(16)));
        const type = MessageType.command;
        return { bytes: chunk({ ...message, type, payload: kept }, chunkSize), chunkSize };
      }
      case 'absurd_length': {
        const declared = 16_385 + random.int(0xffffff - 16_385);
        const bytes = chunk({ ...message, payload }, chunkSize, declared);
        return { bytes: bytes.subarray(0, Math.min(bytes.length, 1 + 11 + chunkSize)), chunkSize };
      }
      case 'chunk_size_change': {
        const size = random.pick(ODD_CHUNK_SIZES);
        const next = size >= 1 && size <= 65536 ? size : chunkSize;
        // Half the time the following message ignores the announced size.
        const used = random.next() < 0.5 ? next : chunkSize;
        return {
          bytes: Buffer.concat([
            chunk(setChunkSize(size), chunkSize),
            chunk({ ...message, payload }, used),
          ]),
          chunkSize: next,
        };
      }
      case 'interleave': {
        // The same message on three chunk streams (1-, 2- and 3-byte ids), chunks taken in turn.
        const cids = [2 + random.int(62), 64 + random.int(256), 320 + random.int(65_280)];
        const lists = cids.map((cid) => chunkList({ ...message, cid, payload }, chunkSize));
        const out: Buffer[] = [];
        for (let index = 0; lists.some((list) => index < list.length); index++) {
          for (const list of lists) if (index < list.length) out.push(list[index]!);
        }
        return { bytes: Buffer.concat(out), chunkSize };
      }
      case 'garbage':
        return { bytes: random.bytes(1 + random.int(512)), chunkSize };
    }
  }
}

/**
 * Records what a real ffmpeg publisher sends (handshake, commands, metadata, media) for about
 * `seconds`, by sitting between it and the server at `targetPort`, and returns its messages.
 */
export async function recordPublisherSession(
  targetPort: number,
  streamName: string,
  seconds = 1.5,
): Promise<RtmpMessage[]> {
  const recorded: Buffer[] = [];
  const proxy = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    client.on('data', (data: Buffer) => {
      recorded.push(data);
      upstream.write(data);
    });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as net.AddressInfo;
  const publisher = publishLikeObs({
    url: `rtmp://127.0.0.1:${port}/live/${streamName}`,
    seconds,
    width: 320,
    height: 240,
    fps: 15,
  });
  await new Promise((resolve) => publisher.once('exit', resolve));
  await new Promise((resolve) => proxy.close(resolve));
  return parseClientStream(Buffer.concat(recorded));
}

/** What a fuzz run sent and how the server dealt with it. */
export interface FuzzReport {
  /** Hostile connections opened. */
  connections: number;
  /** Malformed or truncated messages written. */
  malformed: number;
  /** Connections the server closed (for a broken rule or a timeout). */
  closedByServer: number;
  /** Connections the fuzzer cut itself (abrupt closes). */
  closedByClient: number;
  /** Connections still open when the fuzzer gave up waiting on them. */
  leftOpen: number;
}

/**
 * Sends `connections` hostile connections to the RTMP server at `port`, `concurrency` at a time,
 * and waits up to `closeWaitMs` for the server to close each one that the fuzzer does not cut.
 */
export async function runRtmpFuzz(options: {
  port: number;
  fuzzer: RtmpFuzzer;
  connections: number;
  messagesPerConnection: number;
  concurrency: number;
  closeWaitMs: number;
}): Promise<FuzzReport> {
  const report: FuzzReport = {
    connections: 0,
    malformed: 0,
    closedByServer: 0,
    closedByClient: 0,
    leftOpen: 0,
  };
  let started = 0;
  const worker = async () => {
    while (started < options.connections) {
      started += 1;
      const hostile = options.fuzzer.next(options.messagesPerConnection);
      report.connections += 1;
      report.malformed += hostile.malformed;
      let socket: net.Socket;
      try {
        socket = await connectTcp(options.port);
      } catch {
        report.closedByServer += 1;
        continue;
      }
      socket.on('error', () => undefined);
      const closing = closed(socket);
      socket.write(hostile.bytes);
      if (hostile.abruptClose) {
        socket.destroy();
        report.closedByClient += 1;
        await closing;
        continue;
      }
      const timeout = new Promise<'timeout'>((resolve) =>
        setTimeout(() => resolve('timeout'), options.closeWaitMs).unref(),
      );
      if ((await Promise.race([closing, timeout])) === 'timeout') {
        report.leftOpen += 1;
        socket.destroy();
      } else {
        report.closedByServer += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return report;
}

/** A seed for a run: fixed when `RTMP_FUZZ_SEED` is set, to replay a failure. */
export function fuzzSeed(env: Record<string, string | undefined> = process.env): number {
  const fixed = env.RTMP_FUZZ_SEED;
  return fixed !== undefined ? Number(fixed) : randomBytes(4).readUInt32BE(0);
}
