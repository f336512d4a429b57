import { randomBytes } from 'node:crypto';
import net from 'node:net';

/** Size of each handshake block (C1, C2) in the RTMP 1.0 spec, section 5.2. */
export const HANDSHAKE_BLOCK = 1536;

/** RTMP message types the tests send. */
export const MessageType = {
  setChunkSize: 1,
  audio: 8,
  video: 9,
  data: 18,
  command: 20,
} as const;

/** One RTMP message before chunking. */
export interface RtmpMessage {
  /** Chunk stream id (2 and up). */
  cid: number;
  /** Message type id. */
  type: number;
  /** Message stream id. */
  streamId: number;
  /** Timestamp in milliseconds. */
  timestamp: number;
  /** Body. */
  payload: Buffer;
}

/** C0, C1 and C2 of a simple handshake, sent in one go (the server does not check C2). */
export function handshake(): Buffer {
  return Buffer.concat([
    Buffer.from([3]),
    randomBytes(HANDSHAKE_BLOCK),
    randomBytes(HANDSHAKE_BLOCK),
  ]);
}

/** AMF0 number. */
export function amfNumber(value: number): Buffer {
  const out = Buffer.alloc(9);
  out[0] = 0x00;
  out.writeDoubleBE(value, 1);
  return out;
}

/** AMF0 string. */
export function amfString(value: string): Buffer {
  const text = Buffer.from(value, 'utf8');
  const out = Buffer.alloc(3 + text.length);
  out[0] = 0x02;
  out.writeUInt16BE(text.length, 1);
  text.copy(out, 3);
  return out;
}

/** AMF0 null. */
export function amfNull(): Buffer {
  return Buffer.from([0x05]);
}

/** AMF0 object of string and number properties. */
export function amfObject(properties: Record<string, string | number>): Buffer {
  const parts: Buffer[] = [Buffer.from([0x03])];
  for (const [key, value] of Object.entries(properties)) {
    const name = Buffer.from(key, 'utf8');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(name.length);
    parts.push(length, name, typeof value === 'number' ? amfNumber(value) : amfString(value));
  }
  parts.push(Buffer.from([0x00, 0x00, 0x09]));
  return Buffer.concat(parts);
}

/** A command message on chunk stream 3. */
export function command(streamId: number, ...values: Buffer[]): RtmpMessage {
  return {
    cid: 3,
    type: MessageType.command,
    streamId,
    timestamp: 0,
    payload: Buffer.concat(values),
  };
}

/** `connect` as OBS sends it, to `rtmp://127.0.0.1/<app>`. */
export function connect(app: string): RtmpMessage {
  return command(
    0,
    amfString('connect'),
    amfNumber(1),
    amfObject({ app, type: 'nonprivate', tcUrl: `rtmp://127.0.0.1/${app}` }),
  );
}

/** `createStream`, then `publish` of `name` on message stream 1. */
export function publishCommands(name: string): RtmpMessage[] {
  return [
    command(0, amfString('createStream'), amfNumber(2), amfNull()),
    command(1, amfString('publish'), amfNumber(3), amfNull(), amfString(name), amfString('live')),
  ];
}

/**
 * Chunks a message: a type 0 header, then type 3 headers every `chunkSize` bytes. `declaredLength`
 * lets a test lie about the length in the header.
 */
export function chunk(message: RtmpMessage, chunkSize = 128, declaredLength?: number): Buffer {
  return Buffer.concat(chunkList(message, chunkSize, declaredLength));
}

/** The chunks of a message, one buffer each (header included), to interleave with others. */
export function chunkList(
  message: RtmpMessage,
  chunkSize = 128,
  declaredLength?: number,
): Buffer[] {
  const header = Buffer.alloc(11);
  header.writeUIntBE(Math.min(message.timestamp, 0xffffff), 0, 3);
  header.writeUIntBE(declaredLength ?? message.payload.length, 3, 3);
  header[6] = message.type;
  header.writeUInt32LE(message.streamId, 7);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset === 0 || offset < message.payload.length; offset += chunkSize) {
    const body = message.payload.subarray(offset, offset + chunkSize);
    chunks.push(
      offset === 0
        ? Buffer.concat([basicHeader(0, message.cid), header, body])
        : Buffer.concat([basicHeader(3, message.cid), body]),
    );
  }
  return chunks;
}

/** A "set chunk size" message. */
export function setChunkSize(size: number): RtmpMessage {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(size >>> 0);
  return { cid: 2, type: MessageType.setChunkSize, streamId: 0, timestamp: 0, payload };
}

/** The chunk basic header for a format and chunk stream id (1 to 3 bytes). */
export function basicHeader(fmt: number, cid: number): Buffer {
  if (cid < 64) return Buffer.from([(fmt << 6) | cid]);
  if (cid < 320) return Buffer.from([fmt << 6, cid - 64]);
  return Buffer.from([(fmt << 6) | 1, (cid - 64) & 0xff, (cid - 64) >> 8]);
}

/**
 * Splits a recorded client byte stream (handshake included) back into messages, following the
 * client's own chunk-size changes; a cut-off last message is dropped.
 */
export function parseClientStream(bytes: Buffer): RtmpMessage[] {
  let offset = 1 + 2 * HANDSHAKE_BLOCK;
  let chunkSize = 128;
  const previous = new Map<number, RtmpMessage & { length: number }>();
  const pending = new Map<number, Buffer[]>();
  const messages: RtmpMessage[] = [];
  while (offset < bytes.length) {
    const first = bytes[offset]!;
    const fmt = first >> 6;
    let cid = first & 0x3f;
    let basic = 1;
    if (cid === 0) {
      cid = 64 + (bytes[offset + 1] ?? 0);
      basic = 2;
    } else if (cid === 1) {
      cid = 64 + (bytes[offset + 1] ?? 0) + (bytes[offset + 2] ?? 0) * 256;
      basic = 3;
    }
    offset += basic;
    const last = previous.get(cid) ?? {
      cid,
      type: 0,
      streamId: 0,
      timestamp: 0,
      length: 0,
      payload: Buffer.alloc(0),
    };
    const headerBytes = [11, 7, 3, 0][fmt]!;
    if (offset + headerBytes > bytes.length) break;
    const current = { ...last };
    if (fmt <= 2) current.timestamp = bytes.readUIntBE(offset, 3);
    if (fmt <= 1) {
      current.length = bytes.readUIntBE(offset + 3, 3);
      current.type = bytes[offset + 6]!;
    }
    if (fmt === 0) current.streamId = bytes.readUInt32LE(offset + 7);
    offset += headerBytes;
    if (current.timestamp === 0xffffff) offset += 4;
    previous.set(cid, current);
    const collected = pending.get(cid) ?? [];
    const have = collected.reduce((sum, part) => sum + part.length, 0);
    const take = Math.min(chunkSize, current.length - have);
    if (offset + take > bytes.length) break;
    collected.push(bytes.subarray(offset, offset + take));
    offset += take;
    if (have + take < current.length) {
      pending.set(cid, collected);
      continue;
    }
    pending.delete(cid);
    const message: RtmpMessage = { ...current, payload: Buffer.concat(collected) };
    messages.push(message);
    if (message.type === MessageType.setChunkSize) chunkSize = message.payload.readUInt32BE(0);
  }
  return messages;
}

/**
 * Opens a TCP connection to the server and resolves once it is connected. What the server sends
 * is read and dropped, so that its closing of the connection is seen.
 */
export function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.resume();
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves when the socket is closed by either side, with how long that took. */
export function closed(socket: net.Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(0);
    else socket.once('close', () => resolve(Date.now() - started));
  });
}
