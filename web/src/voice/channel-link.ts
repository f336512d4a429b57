import {
  errorCodeSchema,
  type ErrorCode,
  type VoiceJoin,
  type VoiceResponseData,
} from '@hearth/protocol';
import type { Device } from 'mediasoup-client';
import { ApiError } from '../api/http';
import type { DeviceLoader } from './device-loader';
import { TypedEmitter } from './emitter';
import { describeError } from './errors';
import { isFinalPlacementError, signalingUrlOf, type LocateVoiceNode } from './placement';
import {
  SignalingClient,
  SignalingError,
  type SignalingCloseInfo,
  type SignalingErrorCode,
} from './signaling';
import { toWireRtpCapabilities } from './wire';

/** Where a link to a channel is in its life. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Everything there is to show about a link. Each change produces a new object. */
export interface LinkState {
  /** Connection state. */
  connection: ConnectionState;
  /** The caller's peer id while joined. */
  peerId: string | null;
  /** Successful joins of this link, rejoins included. */
  joinCount: number;
  /** Why the link closed, when it was not the user's choice. */
  closeReason: string | null;
  /**
   * Code of the refusal that closed the link, e.g. `not_found` for a channel that does not
   * exist or `forbidden` for a caller removed by a moderator; null otherwise.
   */
  failureCode: SignalingErrorCode | null;
}

/** Events of a channel link. */
export type ChannelLinkEvents = {
  /** The state changed; the argument is the new state. */
  state: [LinkState];
  /**
   * The connection problem worth showing changed: a failed attempt about to be retried, or the
   * failure that closed the link; null once a join succeeds or the user leaves.
   */
  problem: [string | null];
};

/** The ICE settings of one join's transports. */
export interface JoinIce {
  /** TURN servers with credentials, from the api's placement of this join. */
  iceServers: RTCIceServer[];
  /** `relay` sends all media through TURN; `all` lets ICE pick the best path. */
  iceTransportPolicy: RTCIceTransportPolicy;
}

/** One join of a link: its connection, its Device and the server's answer to `join`. */
export interface ChannelJoin {
  /** The signaling connection the join was made on. */
  signaling: SignalingClient;
  /** The loaded mediasoup-client Device. */
  device: Device;
  /** The server's response to `join`. */
  joined: VoiceResponseData<'join'>;
  /** What its send and receive transports use for ICE. */
  ice: JoinIce;
  /** Throws once this join is no longer the current one: a leave, a loss or a newer attempt. */
  assertCurrent(): void;
}

/** What a client does at each step of its link's joins. */
export interface JoinHandler {
  /** A join attempt starts; work that can run while the connection is set up starts here. */
  onAttempt(): void;
  /**
   * Builds the media of a join; rejecting fails the attempt, which is retried when the failure
   * can pass. Check `join.assertCurrent()` after every await.
   */
  onJoined(join: ChannelJoin): Promise<void>;
  /** The join is complete: the media flows. */
  onConnected(join: ChannelJoin): void;
  /** Drops everything the current join built; runs before each retry, on a loss, and on close. */
  onReset(): void;
  /** The link closed for good, after the last `onReset`. */
  onClose(): void;
}

/** Settings of a channel link. */
export interface ChannelLinkOptions {
  /** Channel to join. */
  channel: string;
  /** Finds the node to connect to and issues the join token. */
  locate: LocateVoiceNode;
  /** Shared Device loader; a preloaded Device makes joining faster. */
  devices: DeviceLoader;
  /** Builds and drops the media of each join. */
  handler: JoinHandler;
  /** `relay` forces media through the TURN servers (`?relay=1`, for tests); `all` by default. */
  iceTransportPolicy?: RTCIceTransportPolicy;
}

const CHANNEL_CLOSED_MESSAGES = {
  deleted: 'The channel was deleted.',
  released: 'An operator closed the channel.',
  shutdown: 'The server is shutting down.',
} as const;

// Delays before reconnect attempts: doubling from the first value up to the cap.
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5_000;
// Failures that can pass by themselves: the connection dropped, the server was busy, or a join
// overlapped the previous one. Anything else (a bad name, no access, an unsupported browser) is
// final and retrying would only repeat it.
const RETRYABLE_CODES = new Set<SignalingErrorCode>([
  'timeout',
  'disconnected',
  'unavailable',
  'internal',
  'rate_limited',
  'conflict',
  'already_joined',
  'not_joined',
]);

class StaleAttemptError extends Error {}

/**
 * The join and reconnect lifecycle of one visit to a channel: placement on a node, the signaling
 * connection, the Device and the `join` request, then recovery from dropped connections and lost
 * media paths with backoff, avoiding the node just lost. What each join carries is its handler's
 * business. After `close()` the link is done, and joining again takes a new one.
 */
export class ChannelLink {
  /** State changes and connection problems. */
  readonly events = new TypedEmitter<ChannelLinkEvents>();
  readonly #channel: string;
  readonly #locate: LocateVoiceNode;
  readonly #devices: DeviceLoader;
  readonly #handler: JoinHandler;
  readonly #iceTransportPolicy: RTCIceTransportPolicy;
  // The node of the last connection, avoided on the next placement after it was lost.
  #nodeId: string | null = null;
  // TURN servers of the last placement: credentials come with each placement.
  #iceServers: RTCIceServer[] = [];
  #avoid: string[] = [];
  #signaling: SignalingClient | null = null;
  #attempt = 0;
  #retries = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #state: LinkState = {
    connection: 'idle',
    peerId: null,
    joinCount: 0,
    closeReason: null,
    failureCode: null,
  };

  constructor(options: ChannelLinkOptions) {
    this.#channel = options.channel;
    this.#locate = options.locate;
    this.#devices = options.devices;
    this.#handler = options.handler;
    this.#iceTransportPolicy = options.iceTransportPolicy ?? 'all';
  }

  /** The current state. */
  get state(): LinkState {
    return this.#state;
  }

  /** The signaling connection of the current join, or null while not joined. */
  get signaling(): SignalingClient | null {
    return this.#state.peerId === null ? null : this.#signaling;
  }

  /** The voice node the link was last placed on. */
  get nodeId(): string | null {
    return this.#nodeId;
  }

  /** Connects and joins; progress and failures are reported through `state` and `problem`. */
  open(): void {
    if (this.#state.connection !== 'idle') return;
    this.#update({ connection: 'connecting' });
    void this.#attemptJoin();
  }

  /**
   * The media path of the current join is gone: starts over from a fresh connection after the
   * first backoff delay, avoiding the node just lost.
   */
  restart(): void {
    if (this.#isClosed()) return;
    if (this.#nodeId !== null) this.#avoid = [this.#nodeId];
    this.#resetJoin();
    this.#closeSignaling();
    this.#update({ connection: 'reconnecting' });
    this.#scheduleRetry();
  }

  /** Leaves the channel and closes the connection. Idempotent. */
  close(): void {
    this.#finish(null);
  }

  /**
   * Closes the signaling socket the way a network failure would. The link sees an unexpected
   * loss and recovers by itself; this exists for tests of that recovery.
   */
  dropSignaling(): void {
    this.#signaling?.drop();
  }

  // Runs the whole join flow once. Every await is followed by a check that this attempt is still
  // the current one: a leave, a lost connection or a newer attempt makes it stale, and whoever
  // made it stale has already released what it built.
  async #attemptJoin(): Promise<void> {
    const attempt = ++this.#attempt;
    const assertCurrent = () => this.#assertCurrent(attempt);
    this.#handler.onAttempt();
    try {
      const signaling = await this.#openSignaling(attempt);
      const device = await this.#loadDevice(signaling);
      assertCurrent();
      const joined = await signaling.request('join', {
        channel: this.#channel,
        rtpCapabilities: toWireRtpCapabilities(device.rtpCapabilities),
      });
      assertCurrent();
      this.#update({ peerId: joined.peerId });
      const ice = { iceServers: this.#iceServers, iceTransportPolicy: this.#iceTransportPolicy };
      const join: ChannelJoin = { signaling, device, joined, assertCurrent, ice };
      await this.#handler.onJoined(join);
      assertCurrent();
      this.#retries = 0;
      this.#avoid = [];
      this.#update({ connection: 'connected', joinCount: this.#state.joinCount + 1 });
      this.events.safeEmit('problem', null);
      this.#handler.onConnected(join);
    } catch (error) {
      if (error instanceof StaleAttemptError || attempt !== this.#attempt) return;
      this.#resetJoin();
      this.#closeSignaling();
      if (!isRetryable(error)) {
        this.#finish(null, describeError(error), failureCodeOf(error));
        return;
      }
      if (this.#nodeId !== null) this.#avoid = [this.#nodeId];
      this.events.safeEmit('problem', `Connection problem: ${describeError(error)}. Retrying…`);
      this.#scheduleRetry();
    }
  }

  #assertCurrent(attempt: number): void {
    if (attempt !== this.#attempt) throw new StaleAttemptError();
  }

  async #openSignaling(attempt: number): Promise<SignalingClient> {
    if (this.#signaling?.isOpen) return this.#signaling;
    this.#closeSignaling();
    let placement: VoiceJoin;
    try {
      placement = await this.#locate(this.#avoid);
    } catch (error) {
      throw isFinalPlacementError(error)
        ? new SignalingError(refusalCodeOf(error), describeError(error))
        : new SignalingError('unavailable', describeError(error));
    }
    this.#assertCurrent(attempt);
    this.#nodeId = placement.nodeId;
    this.#iceServers = placement.iceServers;
    const signaling = new SignalingClient(signalingUrlOf(placement));
    this.#signaling = signaling;
    this.#watchSignaling(signaling);
    await signaling.waitUntilOpen();
    this.#assertCurrent(attempt);
    return signaling;
  }

  // The router capabilities are the same for every join on a node, so a Device loaded before
  // (preloaded by the view, or by an earlier join) serves this one; otherwise the capabilities
  // come over signaling. A preloaded Device that failed to load is replaced the same way.
  async #loadDevice(signaling: SignalingClient): Promise<Device> {
    const loaded = this.#devices.loaded();
    if (loaded) {
      const device = await loaded.catch(() => null);
      if (device) return device;
    }
    const { rtpCapabilities } = await signaling.request('getRouterRtpCapabilities', {});
    return this.#devices.load(rtpCapabilities);
  }

  #watchSignaling(signaling: SignalingClient): void {
    signaling.events.on('close', (info) => this.#onSignalingClosed(signaling, info));
    signaling.onNotification('reconnect', () => {
      if (signaling !== this.#signaling || this.#isClosed()) return;
      // The server lost this peer's media path but the signaling connection is fine, so the
      // join runs again on it right away.
      this.#resetJoin();
      this.#update({ connection: 'reconnecting' });
      void this.#attemptJoin();
    });
    signaling.onNotification('channelClosed', ({ reason }) => {
      if (signaling !== this.#signaling) return;
      this.#finish(CHANNEL_CLOSED_MESSAGES[reason]);
    });
  }

  #onSignalingClosed(signaling: SignalingClient, info: SignalingCloseInfo): void {
    if (signaling !== this.#signaling) return;
    this.#signaling = null;
    // A joined caller's socket closed as forbidden was removed by a moderator (a kick or a ban):
    // the server's reason is the whole story, and trying again would only be refused.
    if (info.error.code === 'forbidden' && this.#state.peerId !== null) {
      const reason = info.reason.replace(/[.!]+$/, '') || 'a moderator removed you';
      this.#finish(`You were removed from #${this.#channel}: ${reason}.`, null, 'forbidden');
      return;
    }
    if (!isRetryable(info.error)) {
      this.#finish(null, describeError(info.error), info.error.code);
      return;
    }
    // While a join attempt runs, its pending request fails with this close and the attempt
    // schedules the retry itself.
    if (this.#state.connection === 'connected') this.restart();
  }

  #scheduleRetry(): void {
    const delay = Math.min(RETRY_BASE_MS * 2 ** this.#retries, RETRY_MAX_MS);
    this.#retries++;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.#attemptJoin();
    }, delay);
  }

  // Drops everything that belongs to one join and makes any join attempt in flight stale.
  #resetJoin(): void {
    this.#attempt++;
    this.#handler.onReset();
    this.#update({ peerId: null });
  }

  #closeSignaling(): void {
    const signaling = this.#signaling;
    this.#signaling = null;
    signaling?.close();
  }

  #finish(
    closeReason: string | null,
    problem: string | null = null,
    failureCode: SignalingErrorCode | null = null,
  ): void {
    if (this.#isClosed()) return;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#resetJoin();
    this.#closeSignaling();
    this.#handler.onClose();
    this.#update({ connection: 'closed', closeReason, failureCode });
    this.events.safeEmit('problem', problem);
  }

  // A method rather than a comparison at each use: TypeScript keeps a narrowed property type
  // across `await`, and the state can close while an await is pending.
  #isClosed(): boolean {
    return this.#state.connection === 'closed';
  }

  #update(patch: Partial<LinkState>): void {
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('state', this.#state);
  }
}

// The api's own code of a refused placement (`not_found` for a channel that does not exist), so
// the page can tell it apart from a missing grant.
function refusalCodeOf(error: unknown): ErrorCode {
  const code = errorCodeSchema.safeParse(error instanceof ApiError ? error.code : undefined);
  return code.success ? code.data : 'forbidden';
}

function failureCodeOf(error: unknown): SignalingErrorCode | null {
  return error instanceof SignalingError ? error.code : null;
}

function isRetryable(error: unknown): boolean {
  return error instanceof SignalingError && RETRYABLE_CODES.has(error.code);
}
