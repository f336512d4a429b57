import {
  describeZodError,
  isVoiceNotification,
  serverMessageSchema,
  voiceNotificationSchemas,
  voiceRequestSchemas,
  type ErrorCode,
  type ResponseEnvelope,
  type VoiceMethod,
  type VoiceNotificationData,
  type VoiceNotificationMethod,
  type VoiceRequestData,
  type VoiceResponseData,
} from '@hearth/protocol';
import { warn } from '../log';
import { TypedEmitter, type Listener } from './emitter';

/** Codes a failed signaling call carries: the server's error codes plus failures seen locally. */
export type SignalingErrorCode = ErrorCode | 'timeout' | 'disconnected' | 'invalid_response';

/** A signaling request that failed, refused by the server or lost on the way. */
export class SignalingError extends Error {
  /** Machine-readable reason; map errors by this, never by the message text. */
  readonly code: SignalingErrorCode;

  constructor(code: SignalingErrorCode, message: string) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
  }
}

/** How and why the signaling socket closed. */
export interface SignalingCloseInfo {
  /** WebSocket close code; 1006 when the connection dropped. */
  code: number;
  /** Close reason sent by the server, if any. */
  reason: string;
  /** True when this client closed the socket on purpose with `close()`. */
  byClient: boolean;
  /** The error that pending and later requests fail with. */
  error: SignalingError;
}

/** Events of a signaling client. */
export type SignalingEvents = {
  /** The socket opened; requests can be sent. */
  open: [];
  /** The socket closed, for whatever reason; the client cannot be used again. */
  close: [SignalingCloseInfo];
};

/** Settings of a signaling client. */
export interface SignalingOptions {
  /** How long a request waits for its response before failing with `timeout`. */
  requestTimeoutMs?: number;
}

type NotificationEvents = {
  [M in VoiceNotificationMethod]: [VoiceNotificationData<M>];
};

interface PendingRequest {
  method: VoiceMethod;
  resolve: (data: unknown) => void;
  reject: (error: SignalingError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

// The api refuses a WebSocket right after the upgrade with these codes. They describe the caller
// (a bad display name, no access), so they are reported as the matching protocol errors and
// retrying does not help.
const REFUSAL_CODES: Partial<Record<number, ErrorCode>> = {
  4400: 'bad_request',
  4401: 'unauthorized',
  4403: 'forbidden',
  4404: 'not_found',
};

/**
 * The voice signaling protocol over one WebSocket. Every message received is checked against
 * the protocol schemas before anyone sees it; invalid ones are reported and dropped. A client
 * serves a single socket: after `close` it is done, and reconnecting means a new client.
 */
export class SignalingClient {
  /** Open and close events. */
  readonly events = new TypedEmitter<SignalingEvents>();
  readonly #socket: WebSocket;
  readonly #requestTimeoutMs: number;
  readonly #pending = new Map<number, PendingRequest>();
  readonly #notifications = new TypedEmitter<NotificationEvents>();
  #nextId = 1;
  #closeInfo: SignalingCloseInfo | null = null;

  constructor(url: string, options: SignalingOptions = {}) {
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#socket = new WebSocket(url);
    this.#socket.onopen = () => this.events.safeEmit('open');
    this.#socket.onmessage = (event) => this.#onMessage(event);
    this.#socket.onclose = (event) =>
      this.#finish({ code: event.code, reason: event.reason, byClient: false });
  }

  /** True while requests can be sent. */
  get isOpen(): boolean {
    return this.#closeInfo === null && this.#socket.readyState === WebSocket.OPEN;
  }

  /** True once the socket closed. */
  get closed(): boolean {
    return this.#closeInfo !== null;
  }

  /** Resolves once the socket is open; rejects if it closes first or takes longer than allowed. */
  waitUntilOpen(timeoutMs = this.#requestTimeoutMs): Promise<void> {
    if (this.#closeInfo) return Promise.reject(this.#closeInfo.error);
    if (this.isOpen) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const stop = () => {
        clearTimeout(timer);
        offOpen();
        offClose();
      };
      const offOpen = this.events.on('open', () => {
        stop();
        resolve();
      });
      const offClose = this.events.on('close', (info) => {
        stop();
        reject(info.error);
      });
      const timer = setTimeout(() => {
        stop();
        const error = new SignalingError('timeout', 'the signaling server did not answer in time');
        reject(error);
        this.close(4408, 'open timeout');
      }, timeoutMs);
    });
  }

  /** Sends a request and resolves with the server's validated response data. */
  request<M extends VoiceMethod>(
    method: M,
    data: VoiceRequestData<M>,
  ): Promise<VoiceResponseData<M>> {
    if (this.#closeInfo) return Promise.reject(this.#closeInfo.error);
    if (!this.isOpen) {
      return Promise.reject(new SignalingError('disconnected', 'signaling is not connected yet'));
    }
    const id = this.#nextId++;
    return new Promise<VoiceResponseData<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new SignalingError('timeout', `${method} got no answer in time`));
      }, this.#requestTimeoutMs);
      // The response is parsed with this method's own schema before `resolve` sees it, so the
      // data it receives has exactly the type this promise promises.
      const settle = resolve as (data: unknown) => void;
      this.#pending.set(id, { method, resolve: settle, reject, timer });
      this.#socket.send(JSON.stringify({ kind: 'request', id, method, data }));
    });
  }

  /** Adds a handler of one notification and returns the function that removes it. */
  onNotification<M extends VoiceNotificationMethod>(
    method: M,
    handler: Listener<NotificationEvents[M]>,
  ): () => void {
    return this.#notifications.on(method, handler);
  }

  /** Closes the socket on purpose; the `close` event reports `byClient: true`. Idempotent. */
  close(code = 1000, reason = 'client closed'): void {
    if (this.#closeInfo) return;
    this.#detachAndClose(code, reason);
    this.#finish({ code, reason, byClient: true });
  }

  /**
   * Closes the socket the way a network failure looks to this client: pending requests fail
   * with `disconnected` and the `close` event reports `byClient: false` with code 1006.
   */
  drop(): void {
    if (this.#closeInfo) return;
    this.#detachAndClose(4000, 'dropped by the client');
    this.#finish({ code: 1006, reason: '', byClient: false });
  }

  // Once the client gave up on the socket, nothing it still delivers may be processed: the close
  // has already been reported and a late message would act on state that was torn down.
  #detachAndClose(code: number, reason: string): void {
    this.#socket.onopen = null;
    this.#socket.onmessage = null;
    this.#socket.onclose = null;
    this.#socket.close(code, reason);
  }

  #finish(close: { code: number; reason: string; byClient: boolean }): void {
    if (this.#closeInfo) return;
    const info: SignalingCloseInfo = { ...close, error: closeError(close.code, close.reason) };
    this.#closeInfo = info;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(info.error);
    }
    this.#pending.clear();
    this.events.safeEmit('close', info);
    this.events.removeAllListeners();
    this.#notifications.removeAllListeners();
  }

  #onMessage(event: MessageEvent): void {
    if (typeof event.data !== 'string') {
      warn('dropped a binary signaling message');
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      warn('dropped a signaling message that is not JSON');
      return;
    }
    const parsed = serverMessageSchema.safeParse(json);
    if (!parsed.success) {
      warn(`dropped an invalid signaling message: ${describeZodError(parsed.error)}`);
      return;
    }
    const message = parsed.data;
    if (message.kind === 'notification') {
      if (isVoiceNotification(message.method)) this.#notify(message.method, message.data);
      else warn(`dropped an unknown notification "${message.method}"`);
    } else {
      this.#onResponse(message);
    }
  }

  #onResponse(message: ResponseEnvelope): void {
    const id = message.id;
    if (id === null) {
      // The server could not tell which request this answers (it was unreadable or rate
      // limited), so the request it belongs to will fail with a timeout instead.
      if (!message.ok) {
        warn(`the server refused a request: ${message.error.code}: ${message.error.message}`);
      }
      return;
    }
    const pending = this.#pending.get(id);
    if (!pending) {
      warn(`dropped a response to unknown or timed-out request ${id}`);
      return;
    }
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (!message.ok) {
      pending.reject(new SignalingError(message.error.code, message.error.message));
      return;
    }
    const data = voiceRequestSchemas[pending.method].response.safeParse(message.data);
    if (!data.success) {
      const detail = describeZodError(data.error);
      warn(`dropped an invalid ${pending.method} response: ${detail}`);
      pending.reject(new SignalingError('invalid_response', `invalid ${pending.method} response`));
      return;
    }
    pending.resolve(data.data);
  }

  #notify<M extends VoiceNotificationMethod>(method: M, data: unknown): void {
    const parsed = voiceNotificationSchemas[method].safeParse(data);
    if (!parsed.success) {
      warn(`dropped an invalid ${method} notification: ${describeZodError(parsed.error)}`);
      return;
    }
    // `parsed.data` comes from this notification's own schema, which is what its type is made of.
    const args = [parsed.data] as NotificationEvents[M];
    this.#notifications.safeEmit(method, ...args);
  }
}

function closeError(code: number, reason: string): SignalingError {
  const refusal = REFUSAL_CODES[code];
  if (refusal) {
    return new SignalingError(refusal, reason || `the server refused the connection (${code})`);
  }
  const detail = reason ? `: ${reason}` : ` (code ${code})`;
  return new SignalingError('disconnected', `the signaling connection closed${detail}`);
}
