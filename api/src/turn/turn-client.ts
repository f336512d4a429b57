import dgram from 'node:dgram';
import net from 'node:net';
import {
  StunAttribute,
  StunMethod,
  attributeOf,
  decodeErrorCode,
  decodeStunMessage,
  decodeXorAddress,
  encodeStunRequest,
  longTermKey,
  newTransactionId,
  stunMessageLength,
  type StunAttributeValue,
  type StunMessage,
} from './stun';

/** How a TURN server answered an Allocate with the given credentials. */
export type TurnAllocation =
  | {
      /** The server allocated a relay address (it is released again at once). */
      readonly ok: true;
      /** The relayed transport address the server allocated. */
      readonly relayed: { readonly address: string; readonly port: number };
    }
  | {
      /** The server refused. */
      readonly ok: false;
      /** STUN error code, e.g. 401 for credentials it does not accept. */
      readonly code: number;
      /** The server's reason phrase. */
      readonly reason: string;
    };

// UDP requests are sent again at this interval until answered: loopback and LAN round trips are
// far below it, and the deadline bounds the whole exchange.
const UDP_RESEND_MS = 250;
const DEFAULT_TIMEOUT_MS = 3000;
// TCP bytes buffered while waiting for the rest of a message; a STUN message is far smaller.
const MAX_TCP_BUFFER_BYTES = 8192;
// RFC 8656 REQUESTED-TRANSPORT: protocol 17 (UDP) followed by three reserved bytes.
const UDP_TRANSPORT = Buffer.from([17, 0, 0, 0]);
const STALE_NONCE = 438;

interface StunChannel {
  exchange(transactionId: Buffer, message: Buffer): Promise<StunMessage>;
  close(): void;
}

/**
 * Asks a TURN server for a relay address with long-term credentials (RFC 8656 Allocate, the
 * first attempt unauthenticated to learn the realm and nonce), then releases it with a Refresh of
 * lifetime 0. Resolves with the answer; rejects when the server does not answer in time or
 * answers with something that is not STUN.
 */
export async function turnAllocate(options: {
  /** Address of the TURN server. */
  host: string;
  /** Its port. */
  port: number;
  /** Transport to reach it over; UDP by default. */
  transport?: 'udp' | 'tcp';
  /** TURN username. */
  username: string;
  /** TURN password. */
  password: string;
  /** Time allowed for the whole exchange, in milliseconds. */
  timeoutMs?: number;
}): Promise<TurnAllocation> {
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const where = `${options.host}:${options.port}`;
  const channel =
    options.transport === 'tcp'
      ? await openTcp(options.host, options.port, deadline, where)
      : openUdp(options.host, options.port, deadline, where);
  try {
    const request = (attributes: StunAttributeValue[], method: number, key?: Buffer) => {
      const transactionId = newTransactionId();
      return channel.exchange(
        transactionId,
        encodeStunRequest(method, transactionId, attributes, key),
      );
    };
    const transport = { type: StunAttribute.requestedTransport, value: UDP_TRANSPORT };
    let answer = await request([transport], StunMethod.allocate);
    // A second try covers a nonce that went stale between the two requests.
    for (let attempt = 0; attempt < 2 && answer.class === 'error'; attempt++) {
      const realm = attributeOf(answer, StunAttribute.realm);
      const nonce = attributeOf(answer, StunAttribute.nonce);
      if (!realm || !nonce) break;
      const key = longTermKey(options.username, realm.toString('utf8'), options.password);
      const credentials = [
        { type: StunAttribute.username, value: Buffer.from(options.username, 'utf8') },
        { type: StunAttribute.realm, value: realm },
        { type: StunAttribute.nonce, value: nonce },
      ];
      answer = await request([transport, ...credentials], StunMethod.allocate, key);
      if (answer.class === 'success') {
        const release = { type: StunAttribute.lifetime, value: Buffer.alloc(4) };
        await request([release, ...credentials], StunMethod.refresh, key).catch(() => undefined);
        break;
      }
      if (errorOf(answer).code !== STALE_NONCE) break;
    }
    if (answer.class === 'success') {
      const relayed = decodeXorAddress(
        attributeOf(answer, StunAttribute.xorRelayedAddress) ?? Buffer.alloc(0),
        answer.transactionId,
      );
      if (!relayed) throw new Error(`TURN server at ${where} allocated without a relay address`);
      return { ok: true, relayed };
    }
    return { ok: false, ...errorOf(answer) };
  } finally {
    channel.close();
  }
}

function errorOf(answer: StunMessage): { code: number; reason: string } {
  return (
    decodeErrorCode(attributeOf(answer, StunAttribute.errorCode) ?? Buffer.alloc(0)) ?? {
      code: 0,
      reason: 'error response without a valid ERROR-CODE',
    }
  );
}

function timeoutError(where: string): Error {
  return new Error(`TURN server at ${where} did not answer in time`);
}

// Pairs answers with requests by transaction id; anything else that arrives is ignored.
class PendingExchanges {
  readonly #waiting = new Map<string, (message: StunMessage) => void>();

  wait(transactionId: Buffer): Promise<StunMessage> {
    return new Promise((resolve) => this.#waiting.set(transactionId.toString('hex'), resolve));
  }

  deliver(message: StunMessage | null): void {
    if (!message || message.class === 'request' || message.class === 'indication') return;
    const key = message.transactionId.toString('hex');
    const resolve = this.#waiting.get(key);
    this.#waiting.delete(key);
    resolve?.(message);
  }

  forget(transactionId: Buffer): void {
    this.#waiting.delete(transactionId.toString('hex'));
  }
}

function untilDeadline<T>(
  promise: Promise<T>,
  deadline: number,
  where: string,
  failed: Promise<never>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeoutError(where)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([promise, expired, failed]).finally(() => clearTimeout(timer));
}

function openUdp(host: string, port: number, deadline: number, where: string): StunChannel {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const pending = new PendingExchanges();
  let rejectFailed: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = reject;
  });
  failed.catch(() => undefined);
  socket.on('message', (data, from) => {
    if (from.port === port) pending.deliver(decodeStunMessage(data));
  });
  socket.on('error', (error) => rejectFailed(error));
  return {
    async exchange(transactionId, message) {
      const answer = pending.wait(transactionId);
      const send = () => socket.send(message, port, host, (error) => error && rejectFailed(error));
      send();
      const resend = setInterval(send, UDP_RESEND_MS);
      try {
        return await untilDeadline(answer, deadline, where, failed);
      } finally {
        clearInterval(resend);
        pending.forget(transactionId);
      }
    },
    close: () => socket.close(),
  };
}

async function openTcp(
  host: string,
  port: number,
  deadline: number,
  where: string,
): Promise<StunChannel> {
  const socket = net.connect({ host, port });
  const pending = new PendingExchanges();
  let buffered = Buffer.alloc(0);
  const failed = new Promise<never>((_, reject) => {
    socket.on('error', reject);
    socket.once('close', () => reject(new Error(`TURN server at ${where} closed the connection`)));
  });
  failed.catch(() => undefined);
  socket.on('data', (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    for (;;) {
      const length = stunMessageLength(buffered);
      if (length === null) break;
      if (length < 0 || buffered.length > MAX_TCP_BUFFER_BYTES) {
        socket.destroy(new Error(`TURN server at ${where} sent something that is not STUN`));
        return;
      }
      if (buffered.length < length) break;
      pending.deliver(decodeStunMessage(buffered.subarray(0, length)));
      buffered = buffered.subarray(length);
    }
  });
  try {
    await untilDeadline(
      new Promise<void>((resolve) => socket.once('connect', resolve)),
      deadline,
      where,
      failed,
    );
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return {
    async exchange(transactionId, message) {
      const answer = pending.wait(transactionId);
      socket.write(message);
      try {
        return await untilDeadline(answer, deadline, where, failed);
      } finally {
        pending.forget(transactionId);
      }
    },
    close: () => socket.destroy(),
  };
}
