import NmsRtmp from 'node-media-server/src/protocol/rtmp.js';

/**
 * Bounds on what one RTMP peer can make the ingest hold. node-media-server has no such settings,
 * so the RTMP server enforces them around it (see `installParserLimits`).
 */
export interface RtmpLimits {
  /** Largest message a connection may declare until its publish is authorized, in bytes. */
  readonly maxMessageBytesBeforePublish: number;
  /** Largest message an authorized publisher may declare (a keyframe), in bytes. */
  readonly maxMessageBytes: number;
  /** Chunk streams one connection may open. */
  readonly maxChunkStreams: number;
  /** Connections open at once. */
  readonly maxConnections: number;
  /** Connections open at once from one address. */
  readonly maxConnectionsPerAddress: number;
  /** Time from accept to the end of the RTMP handshake, in milliseconds. */
  readonly handshakeTimeoutMs: number;
  /** Time from accept until a publish is authorized (or a play starts), in milliseconds. */
  readonly publishTimeoutMs: number;
  /** Time a connection may stay silent, in milliseconds. */
  readonly idleTimeoutMs: number;
}

/**
 * Defaults: OBS's and ffmpeg's commands before `publish` are a few hundred bytes, and a 2160p60
 * keyframe at 50 Mbit/s stays under 4 MiB; they use chunk streams 2 to 8.
 */
export const DEFAULT_RTMP_LIMITS: RtmpLimits = {
  maxMessageBytesBeforePublish: 16 * 1024,
  maxMessageBytes: 8 * 1024 * 1024,
  maxChunkStreams: 16,
  maxConnections: 256,
  maxConnectionsPerAddress: 16,
  handshakeTimeoutMs: 5_000,
  publishTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
};

/** Why the server closed a connection that broke a limit or the protocol. */
export type RtmpViolation = 'message_size' | 'chunk_streams' | 'chunk_size' | 'protocol_error';

/** A peer broke one of the limits; thrown from inside the parser and caught per connection. */
export class RtmpLimitError extends Error {
  /** Which limit. */
  readonly violation: RtmpViolation;

  constructor(violation: RtmpViolation, message: string) {
    super(message);
    this.name = 'RtmpLimitError';
    this.violation = violation;
  }
}

/** What the parser of one connection may allocate; the server raises it once a publish is authorized. */
export interface ParserLimits {
  /** Largest declared message length. */
  maxMessageBytes: number;
  /** Chunk streams open at once. */
  readonly maxChunkStreams: number;
}

const parserLimits = new WeakMap<NmsRtmp, ParserLimits>();

// RTMP message type of "set chunk size" (RTMP 1.0 spec, 5.4.1).
const SET_CHUNK_SIZE = 1;
// The chunk size is a 31-bit number; 0 would stall node-media-server's parser on NaN.
const MAX_CHUNK_SIZE = 0x7fffffff;

let installed = false;

/**
 * Wraps node-media-server's chunk parser, once per process, so that a connection registered with
 * `limitParser` is checked right after each chunk header is read: before the parser allocates
 * the declared message length, and before it opens another chunk stream. A broken limit throws
 * an RtmpLimitError out of the connection's data handler, which closes that connection only.
 */
function installParserLimits(): void {
  if (installed) return;
  installed = true;
  const prototype = NmsRtmp.prototype;
  const packetParse = prototype.packetParse;
  prototype.packetParse = function (this: NmsRtmp) {
    packetParse.call(this);
    const limits = parserLimits.get(this);
    if (!limits) return;
    if (this.inPackets.size > limits.maxChunkStreams) {
      throw new RtmpLimitError(
        'chunk_streams',
        `more than ${limits.maxChunkStreams} chunk streams`,
      );
    }
    const declared = this.parserPacket.header.length;
    if (declared > limits.maxMessageBytes) {
      throw new RtmpLimitError(
        'message_size',
        `message of ${declared} bytes over the limit of ${limits.maxMessageBytes}`,
      );
    }
  };
  const controlHandler = prototype.controlHandler;
  prototype.controlHandler = function (this: NmsRtmp) {
    const { header, payload } = this.parserPacket;
    if (parserLimits.has(this) && header.type === SET_CHUNK_SIZE) {
      const size = header.length >= 4 ? payload.readUInt32BE(0) : 0;
      if (size < 1 || size > MAX_CHUNK_SIZE) {
        throw new RtmpLimitError('chunk_size', `chunk size ${size} out of range`);
      }
    }
    controlHandler.call(this);
  };
}

/** Applies `limits` to one connection's parser; the object stays live, so changes apply at once. */
export function limitParser(parser: NmsRtmp, limits: ParserLimits): void {
  installParserLimits();
  parserLimits.set(parser, limits);
}

/** Counts open connections in total and per address, and admits new ones within the limits. */
export class ConnectionAdmission {
  readonly #maxTotal: number;
  readonly #maxPerAddress: number;
  readonly #perAddress = new Map<string, number>();
  #total = 0;

  constructor(limits: Pick<RtmpLimits, 'maxConnections' | 'maxConnectionsPerAddress'>) {
    this.#maxTotal = limits.maxConnections;
    this.#maxPerAddress = limits.maxConnectionsPerAddress;
  }

  /** Connections open now. */
  get open(): number {
    return this.#total;
  }

  /**
   * Takes a slot for a connection from `address`, or says which limit refuses it. A taken slot
   * is given back with `release`.
   */
  admit(address: string): 'ok' | 'total' | 'per_address' {
    if (this.#total >= this.#maxTotal) return 'total';
    const fromAddress = this.#perAddress.get(address) ?? 0;
    if (fromAddress >= this.#maxPerAddress) return 'per_address';
    this.#total += 1;
    this.#perAddress.set(address, fromAddress + 1);
    return 'ok';
  }

  /** Gives back the slot of a closed connection from `address`. */
  release(address: string): void {
    const fromAddress = this.#perAddress.get(address);
    if (fromAddress === undefined) return;
    this.#total -= 1;
    if (fromAddress <= 1) this.#perAddress.delete(address);
    else this.#perAddress.set(address, fromAddress - 1);
  }
}

// Stream keys and stream paths must never reach a log line, even inside another library's text.
const STREAM_KEY_PATTERN = /sk_[0-9a-f]{16}_[0-9a-f]{64}/gi;
// node-media-server puts a raw stream name last in its line ("..., name=<anything>").
const TRAILING_NAME_PATTERN = /\bname=.*$/s;
const STREAM_FIELD_PATTERN = /\b(streamName|streamPath)=[^\s,]*/g;
const STREAM_PATH_PATTERN = /\/([A-Za-z0-9_-]+)\/[^\s,'"]+/g;

/** Removes stream keys, stream paths and stream names from a text meant for the logs. */
export function redactStreamNames(text: string): string {
  return text
    .replace(STREAM_KEY_PATTERN, '<key>')
    .replace(TRAILING_NAME_PATTERN, 'name=<name>')
    .replace(STREAM_FIELD_PATTERN, '$1=<name>')
    .replace(STREAM_PATH_PATTERN, '/$1/<name>');
}
