import {
  describeZodError,
  eventNotificationSchemas,
  notificationEnvelopeSchema,
  type EventNotificationData,
  type EventNotificationMethod,
} from '@hearth/protocol';
import { webSocketCredentials } from '../api/session';
import { warn } from '../log';
import { TypedEmitter } from '../voice/emitter';

/** Why the events socket is down, and whether it will try again. */
export interface StreamEventsDisconnect {
  /** What went wrong, for display. */
  reason: string;
  /** Milliseconds until the next attempt, or null when the server refused this client for good. */
  retryInMs: number | null;
}

/** Events of a stream events client: its connection, and each validated notification. */
export type StreamEventsClientEvents = {
  /**
   * The socket opened, the first time or again after a drop. Notifications sent while it was
   * down are lost, so state read before now must be read again.
   */
  open: [];
  /** The socket closed without the client asking it to. */
  disconnect: [StreamEventsDisconnect];
} & { [M in EventNotificationMethod]: [EventNotificationData<M>] };

/** Settings of a stream events client. */
export interface StreamEventsOptions {
  /** Only this channel's events. */
  channel: string;
  /** Counts this client as a viewer of the channel while it is connected. */
  watch: boolean;
  /** Socket URL; defaults to this origin's events endpoint. */
  url?: string;
}

// Delays before reconnect attempts: doubling from the first value up to the cap, so a restarting
// server is not hammered by every open watch page at once.
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 10_000;

// The api closes the socket right after the upgrade with these codes when the request itself is
// wrong (a bad channel name, a foreign origin, a channel the caller may not see); retrying the
// same request cannot succeed.
const REFUSAL_CODES = new Set([4400, 4403, 4404]);

/**
 * Builds the events socket URL of this origin for one channel, with the caller's credentials
 * (a fresh access token, or a guest name): it is built again for every connection attempt.
 */
export async function streamEventsUrl(channel: string, watch: boolean): Promise<string> {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = await webSocketCredentials();
  query.set('channel', channel);
  if (watch) query.set('watch', '1');
  return `${scheme}//${location.host}/ws/events?${query}`;
}

/**
 * The public events socket of one channel. It reconnects with backoff whenever the socket drops
 * and checks every notification against the protocol schemas before anyone sees it. After
 * `close()` it is done.
 */
export class StreamEventsClient {
  /** Connection changes and notifications. */
  readonly events = new TypedEmitter<StreamEventsClientEvents>();
  readonly #url: string | undefined;
  readonly #channel: string;
  readonly #watch: boolean;
  #socket: WebSocket | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #retries = 0;
  #closed = false;

  constructor(options: StreamEventsOptions) {
    this.#channel = options.channel;
    this.#watch = options.watch;
    this.#url = options.url;
    void this.#connect();
  }

  /** Closes the socket and stops reconnecting; no event is emitted after this. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#detach()?.close(1000, 'client closed');
    this.events.removeAllListeners();
  }

  async #connect(): Promise<void> {
    const url = this.#url ?? (await streamEventsUrl(this.#channel, this.#watch));
    if (this.#closed) return;
    const socket = new WebSocket(url);
    this.#socket = socket;
    socket.onopen = () => {
      this.#retries = 0;
      this.events.safeEmit('open');
    };
    socket.onmessage = (event) => this.#onMessage(event);
    socket.onclose = (event) => this.#onClose(event);
  }

  // Once the client gave up on a socket, nothing it still delivers may be processed.
  #detach(): WebSocket | null {
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
    }
    return socket;
  }

  #onClose(event: CloseEvent): void {
    this.#detach();
    if (REFUSAL_CODES.has(event.code)) {
      const reason = event.reason || `the server refused the events socket (${event.code})`;
      this.events.safeEmit('disconnect', { reason, retryInMs: null });
      return;
    }
    const delay = Math.min(RETRY_BASE_MS * 2 ** this.#retries, RETRY_MAX_MS);
    this.#retries++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.#connect();
    }, delay);
    const detail = event.reason ? `: ${event.reason}` : ` (code ${event.code})`;
    this.events.safeEmit('disconnect', {
      reason: `the events connection closed${detail}`,
      retryInMs: delay,
    });
  }

  #onMessage(event: MessageEvent): void {
    if (typeof event.data !== 'string') {
      warn('dropped a binary events message');
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      warn('dropped an events message that is not JSON');
      return;
    }
    const envelope = notificationEnvelopeSchema.safeParse(json);
    if (!envelope.success) {
      warn(`dropped an invalid events message: ${describeZodError(envelope.error)}`);
      return;
    }
    const { method, data } = envelope.data;
    if (!isEventNotification(method)) {
      warn(`dropped an unknown events notification "${method}"`);
      return;
    }
    this.#notify(method, data);
  }

  #notify<M extends EventNotificationMethod>(method: M, data: unknown): void {
    const parsed = eventNotificationSchemas[method].safeParse(data);
    if (!parsed.success) {
      warn(`dropped an invalid ${method} notification: ${describeZodError(parsed.error)}`);
      return;
    }
    // The server filters by channel already; checking again keeps a misrouted event from
    // showing another channel's stream.
    const value = parsed.data;
    const channel = 'stream' in value ? value.stream.channel : value.channel;
    if (channel !== this.#channel) return;
    // `parsed.data` comes from this notification's own schema, which is what its type is made of.
    const args = [value] as StreamEventsClientEvents[M];
    this.events.safeEmit(method, ...args);
  }
}

function isEventNotification(method: string): method is EventNotificationMethod {
  return Object.hasOwn(eventNotificationSchemas, method);
}
