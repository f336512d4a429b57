import {
  DEFAULT_SHARE_PRESET,
  errorCodeSchema,
  type ErrorCode,
  type Participant,
  type SharePresetId,
  type VoiceJoin,
  type VoiceNotificationData,
} from '@hearth/protocol';
import type { Device } from 'mediasoup-client';
import { ApiError } from '../api/http';
import { DeviceLoader } from './device-loader';
import { TypedEmitter } from './emitter';
import { MediaSession, type InboundAudioStats, type RemoteScreen } from './media-session';
import {
  isFinalPlacementError,
  locateAsGuest,
  signalingUrlOf,
  type LocateVoiceNode,
} from './placement';
import { ScreenShare, type ShareLayerStats } from './screen-share';
import {
  SignalingClient,
  SignalingError,
  type SignalingCloseInfo,
  type SignalingErrorCode,
} from './signaling';
import { toWireRtpCapabilities } from './wire';

/** Where a voice client is in its life. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Where the caller's own screen share is: none, being set up, or received by the others. */
export type ShareStatus = 'off' | 'starting' | 'live';

/** One microphone the browser offers. */
export interface Microphone {
  /** Id to pass to `selectMicrophone`. */
  deviceId: string;
  /** Name shown to the user. */
  label: string;
}

/** Everything there is to show about a voice client. Each change produces a new object. */
export interface VoiceState {
  /** Connection state. */
  connection: ConnectionState;
  /** The channel this client joins. */
  channel: string;
  /** The caller's display name. */
  displayName: string;
  /** The caller's peer id while joined. */
  peerId: string | null;
  /** Everyone in the channel, the caller included, in the order they joined. */
  participants: readonly Participant[];
  /** The dominant speaker, if any. */
  activeSpeakerId: string | null;
  /** Peers heard within the last half second. */
  speaking: ReadonlySet<string>;
  /** The caller muted the microphone (or a moderator did); deafening mutes it too. */
  muted: boolean;
  /** The caller turned off all incoming audio, and with it the microphone. */
  deafened: boolean;
  /** A moderator muted the caller; unmuting is refused until they lift it. */
  serverMuted: boolean;
  /** Push-to-talk mode: the microphone opens only while the push-to-talk key is held. */
  pushToTalk: boolean;
  /** The microphone is open and sending right now. */
  transmitting: boolean;
  /** Microphones the browser offers. */
  microphones: readonly Microphone[];
  /** Device id of the microphone in use. */
  microphoneId: string | null;
  /** Why the microphone is unavailable, while it is. */
  microphoneError: string | null;
  /** The browser blocked playback until the user interacts; call `enableAudio()` from a click. */
  audioBlocked: boolean;
  /** The caller's own screen share. */
  sharing: ShareStatus;
  /** Preset of the caller's share while there is one. */
  sharePreset: SharePresetId | null;
  /** Screen shares of the others, in the order they arrived. */
  screens: readonly RemoteScreen[];
  /** Successful joins of this client, rejoins included. */
  joinCount: number;
  /** The last error worth showing to the user. */
  error: string | null;
  /** Why the client closed, when it was not the user's choice. */
  closeReason: string | null;
  /**
   * Code of the refusal that closed the client, e.g. `not_found` for a channel that does not
   * exist or `forbidden` for a caller removed by a moderator; null otherwise.
   */
  failureCode: SignalingErrorCode | null;
}

/** Events of a voice client. */
export type VoiceClientEvents = {
  /** The state changed; the argument is the new state. */
  state: [VoiceState];
};

/** Timestamps (`performance.now()`) of the latest join attempt. */
export interface JoinTimings {
  /** When the join flow started, before the signaling connection was opened if one was needed. */
  joinStartedAt: number | null;
  /** When the first packet of remote audio arrived after that. */
  firstRemoteAudioAt: number | null;
}

/** Settings of a voice client. */
export interface VoiceClientOptions {
  /** Channel to join. */
  channel: string;
  /** Display name to join as. */
  displayName: string;
  /** Microphone to prefer, if the browser still offers it. */
  microphoneId?: string | null;
  /** `KeyboardEvent.code` of the push-to-talk key. */
  pushToTalkKey?: string;
  /** Finds the node to connect to; defaults to asking the api as the named guest. */
  locate?: LocateVoiceNode;
  /** Shared Device loader; a preloaded Device makes joining faster. */
  devices?: DeviceLoader;
}

const CHANNEL_CLOSED_MESSAGES = {
  deleted: 'The channel was deleted.',
  released: 'An operator closed the channel.',
  shutdown: 'The server is shutting down.',
} as const;

// Delays before reconnect attempts: doubling from the first value up to the cap.
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5_000;
// A peer counts as speaking while its last audio level report is this recent.
const SPEAKING_WINDOW_MS = 500;
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
 * A voice channel client: signaling, the mediasoup-client Device, the media of the current join,
 * the microphone and push-to-talk. It recovers by itself from dropped connections and lost media
 * paths, and reports everything through `state`. One client serves one visit to one channel:
 * after `leave()` it is done, and joining again takes a new client.
 */
export class VoiceClient {
  /** State changes. */
  readonly events = new TypedEmitter<VoiceClientEvents>();
  readonly #locate: LocateVoiceNode;
  // The node of the last connection, avoided on the next placement after it was lost.
  #nodeId: string | null = null;
  #avoid: string[] = [];
  readonly #pushToTalkKey: string;
  readonly #participants = new Map<string, Participant>();
  readonly #lastHeard = new Map<string, number>();
  readonly #cleanup: (() => void)[] = [];
  #state: VoiceState;
  #signaling: SignalingClient | null = null;
  #session: MediaSession | null = null;
  readonly #devices: DeviceLoader;
  #attempt = 0;
  #retries = 0;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #speakingTimer: ReturnType<typeof setTimeout> | null = null;
  #track: MediaStreamTrack | null = null;
  #share: ScreenShare | null = null;
  #trackRequest: Promise<MediaStreamTrack | null> | null = null;
  #preferredMicrophoneId: string | null;
  #pushToTalkHeld = false;
  // Deafening mutes the microphone; undeafening restores the mute state from before.
  #mutedBeforeDeafen = false;
  #timings: JoinTimings = { joinStartedAt: null, firstRemoteAudioAt: null };

  constructor(options: VoiceClientOptions) {
    this.#locate = options.locate ?? locateAsGuest(options.channel, options.displayName);
    this.#pushToTalkKey = options.pushToTalkKey ?? 'Space';
    this.#preferredMicrophoneId = options.microphoneId ?? null;
    this.#devices = options.devices ?? new DeviceLoader();
    this.#state = {
      connection: 'idle',
      channel: options.channel,
      displayName: options.displayName,
      peerId: null,
      participants: [],
      activeSpeakerId: null,
      speaking: new Set(),
      muted: false,
      deafened: false,
      serverMuted: false,
      pushToTalk: false,
      transmitting: false,
      microphones: [],
      microphoneId: null,
      microphoneError: null,
      audioBlocked: false,
      sharing: 'off',
      sharePreset: null,
      screens: [],
      joinCount: 0,
      error: null,
      closeReason: null,
      failureCode: null,
    };
  }

  /** The current state. */
  get state(): VoiceState {
    return this.#state;
  }

  /** Timestamps of the latest join attempt, for join-latency measurements. */
  get timings(): JoinTimings {
    return { ...this.#timings };
  }

  /** Connects and joins the channel; progress and failures are reported through `state`. */
  join(): void {
    if (this.#state.connection !== 'idle') return;
    this.#update({ connection: 'connecting' });
    this.#listen(window, 'keydown', (event) => this.#onKey(event as KeyboardEvent, true));
    this.#listen(window, 'keyup', (event) => this.#onKey(event as KeyboardEvent, false));
    this.#listen(window, 'blur', () => this.#setPushToTalkHeld(false));
    // Nobody sees the shares of a hidden tab, so they stop flowing until it shows again.
    this.#listen(document, 'visibilitychange', () =>
      this.#session?.setScreensHidden(document.hidden),
    );
    if (navigator.mediaDevices) {
      this.#listen(navigator.mediaDevices, 'devicechange', () => void this.#refreshMicrophones());
    }
    void this.#attemptJoin();
  }

  /** Leaves the channel and releases everything: media, microphone, connection. Idempotent. */
  leave(): void {
    this.#finish(null);
  }

  /**
   * Mutes or unmutes the microphone. Unmuting is refused while a moderator holds a mute, and
   * undeafens a deafened caller, as in Discord.
   */
  setMuted(muted: boolean): void {
    if (this.#isClosed()) return;
    if (this.#state.deafened) {
      // Deafened means muted already; muting again keeps the microphone muted after undeafening.
      this.#mutedBeforeDeafen = muted;
      if (!muted) void this.setDeafened(false);
      return;
    }
    this.#update({ muted, error: null });
    this.#applyMicrophone();
  }

  /**
   * Turns all incoming audio off or on, locally at once and on the server. Deafening mutes the
   * microphone too; undeafening restores the mute state from before.
   */
  async setDeafened(deafened: boolean): Promise<void> {
    if (this.#isClosed() || deafened === this.#state.deafened) return;
    if (deafened) this.#mutedBeforeDeafen = this.#state.muted;
    const muted = deafened || this.#mutedBeforeDeafen || this.#state.serverMuted;
    this.#update({ deafened, muted, error: null });
    this.#applyMicrophone();
    this.#session?.setDeafened(deafened);
    const signaling = this.#signaling;
    // Until the join completes there is nothing to tell the server: the join flow applies the
    // current setting itself.
    if (!signaling || this.#state.peerId === null) return;
    try {
      await signaling.request('setDeafened', { deafened });
    } catch (error) {
      if (signaling === this.#signaling) this.#reportActionError(error);
    }
  }

  /** Turns push-to-talk mode on or off. */
  setPushToTalk(enabled: boolean): void {
    if (this.#isClosed()) return;
    this.#pushToTalkHeld = false;
    this.#update({ pushToTalk: enabled });
    this.#applyMicrophone();
  }

  /**
   * Opens the microphone while `held` in push-to-talk mode: the on-screen counterpart of the
   * push-to-talk key, for touch screens.
   */
  holdToTalk(held: boolean): void {
    if (this.#isClosed()) return;
    this.#setPushToTalkHeld(held);
  }

  /** Switches to another microphone without interrupting the stream. */
  async selectMicrophone(deviceId: string): Promise<void> {
    if (this.#isClosed()) return;
    this.#preferredMicrophoneId = deviceId;
    let track: MediaStreamTrack;
    try {
      track = await openMicrophone({ exact: deviceId });
    } catch (error) {
      this.#update({ error: `Could not switch microphones: ${describeError(error)}` });
      return;
    }
    const session = this.#session;
    let replaced = false;
    try {
      replaced = session ? await session.replaceTrack(track) : false;
    } catch (error) {
      // The producer still sends the previous microphone, which therefore keeps running.
      track.stop();
      this.#update({ error: `Could not switch microphones: ${describeError(error)}` });
      return;
    }
    if (this.#isClosed()) {
      track.stop();
      return;
    }
    const previous = this.#track;
    this.#useTrack(track);
    previous?.stop();
    if (
      !replaced &&
      session &&
      session === this.#session &&
      this.#state.connection === 'connected'
    ) {
      void this.#startMicrophone(session, Promise.resolve(track));
    }
  }

  /**
   * Moderator action: mutes another participant for everyone, or lifts that mute. Rejects with
   * the server's refusal, for the caller to show next to the control that asked.
   */
  async setServerMuted(peerId: string, muted: boolean): Promise<void> {
    const signaling = this.#signaling;
    if (!signaling || this.#state.peerId === null) {
      throw new SignalingError('not_joined', 'not connected to the channel right now');
    }
    await signaling.request('setServerMuted', { peerId, muted });
  }

  /** Starts audio that the browser's autoplay policy blocked; call it from a user gesture. */
  async enableAudio(): Promise<void> {
    const session = this.#session;
    if (!session) {
      this.#update({ audioBlocked: false });
      return;
    }
    if (await session.resumePlayback()) this.#update({ audioBlocked: false });
  }

  /**
   * Shares a screen, window or tab chosen in the browser's picker, with the preset named
   * `presetId`; the share follows the client across reconnects until `stopShare()`, the
   * browser's own "stop sharing", or a refusal from the server, which is shown as the error.
   */
  async startShare(presetId: SharePresetId = DEFAULT_SHARE_PRESET): Promise<void> {
    if (this.#isClosed() || this.#state.sharing !== 'off') return;
    this.#update({ sharing: 'starting', sharePreset: presetId, error: null });
    let share: ScreenShare;
    try {
      share = await ScreenShare.capture(presetId);
    } catch (error) {
      if (this.#isClosed()) return;
      this.#update({
        sharing: 'off',
        sharePreset: null,
        error: `Could not share the screen: ${describeShareError(error)}`,
      });
      return;
    }
    if (this.#isClosed()) {
      share.stop();
      return;
    }
    this.#share = share;
    share.events.on('live', () => this.#update({ sharing: 'live' }));
    share.events.on('ended', (reason) => {
      if (this.#share !== share) return;
      this.#share = null;
      this.#update({ sharing: 'off', sharePreset: null, error: reason ?? this.#state.error });
    });
    const session = this.#session;
    if (session && this.#state.connection === 'connected') void share.attach(session);
  }

  /** Asks for the simulcast layer of a received screen share that fits its tile (0 lowest). */
  setScreenLayer(consumerId: string, spatialLayer: number): void {
    this.#session?.setScreenLayer(consumerId, spatialLayer);
  }

  /** Stops the caller's screen share, if any. */
  stopShare(): void {
    this.#share?.stop();
  }

  /** Counters of each simulcast layer of the caller's screen share. */
  async shareLayerStats(): Promise<ShareLayerStats[]> {
    return (await this.#share?.layerStats()) ?? [];
  }

  /** Byte and packet counters of every remote audio stream of the current join. */
  async inboundAudio(): Promise<InboundAudioStats[]> {
    return (await this.#session?.inboundAudio()) ?? [];
  }

  /** The voice node the client was last placed on. */
  get nodeId(): string | null {
    return this.#nodeId;
  }

  /**
   * Closes the signaling socket the way a network failure would. The client sees an unexpected
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
    this.#timings = { joinStartedAt: performance.now(), firstRemoteAudioAt: null };
    const microphone = this.#acquireMicrophone();
    try {
      const signaling = await this.#openSignaling(attempt);
      const device = await this.#loadDevice(signaling);
      this.#assertCurrent(attempt);
      const joined = await signaling.request('join', {
        channel: this.#state.channel,
        rtpCapabilities: toWireRtpCapabilities(device.rtpCapabilities),
      });
      this.#assertCurrent(attempt);
      this.#participants.clear();
      for (const participant of joined.participants) {
        this.#participants.set(participant.id, participant);
      }
      this.#update({
        peerId: joined.peerId,
        activeSpeakerId: joined.activeSpeakerId,
        participants: [...this.#participants.values()],
      });
      // A deafened caller's consumers must start paused, so the server learns it before the
      // receive transport exists.
      if (this.#state.deafened) {
        await signaling.request('setDeafened', { deafened: true });
        this.#assertCurrent(attempt);
      }
      const session = new MediaSession({
        signaling,
        device,
        deafened: this.#state.deafened,
        screensHidden: document.hidden,
      });
      this.#session = session;
      session.events.on('firstRemoteAudio', (at) => {
        if (this.#session === session) this.#timings.firstRemoteAudioAt = at;
      });
      session.events.on('autoplayBlocked', () => this.#update({ audioBlocked: true }));
      session.events.on('failed', () => {
        if (this.#session === session) this.#lose();
      });
      session.events.on('screenAdded', (screen) => {
        if (this.#session === session) this.#update({ screens: [...this.#state.screens, screen] });
      });
      session.events.on('screenRemoved', (consumerId) => {
        if (this.#session !== session) return;
        this.#update({ screens: this.#state.screens.filter((s) => s.consumerId !== consumerId) });
      });
      session.events.on('screenUpdated', (screen) => {
        if (this.#session !== session) return;
        this.#update({
          screens: this.#state.screens.map((s) =>
            s.consumerId === screen.consumerId ? screen : s,
          ),
        });
      });
      await session.open();
      this.#assertCurrent(attempt);
      this.#retries = 0;
      this.#avoid = [];
      this.#update({ connection: 'connected', joinCount: this.#state.joinCount + 1, error: null });
      // Listening works from here on; the microphone may still wait for the user's permission.
      void this.#startMicrophone(session, microphone);
      // A share started before this join, or kept from the one before a reconnect, goes out on
      // this session; the send transport takes the microphone first.
      if (this.#share) void this.#share.attach(session);
    } catch (error) {
      if (error instanceof StaleAttemptError || attempt !== this.#attempt) return;
      this.#resetMedia();
      this.#closeSignaling();
      if (!isRetryable(error)) {
        this.#finish(null, describeError(error), failureCodeOf(error));
        return;
      }
      if (this.#nodeId !== null) this.#avoid = [this.#nodeId];
      this.#update({ error: `Connection problem: ${describeError(error)}. Retrying…` });
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
    const current = () => signaling === this.#signaling && this.#state.peerId !== null;
    signaling.events.on('close', (info) => this.#onSignalingClosed(signaling, info));
    signaling.onNotification('participantJoined', ({ participant }) => {
      if (current()) this.#putParticipant(participant);
    });
    signaling.onNotification('participantUpdated', ({ participant }) => {
      if (current()) this.#putParticipant(participant);
    });
    signaling.onNotification('participantLeft', ({ peerId }) => {
      if (!current()) return;
      this.#participants.delete(peerId);
      this.#lastHeard.delete(peerId);
      this.#update({ participants: [...this.#participants.values()] });
      this.#refreshSpeaking();
    });
    signaling.onNotification('activeSpeaker', ({ peerId }) => {
      if (current()) this.#update({ activeSpeakerId: peerId });
    });
    signaling.onNotification('audioLevels', (data) => {
      if (current()) this.#onAudioLevels(data);
    });
    signaling.onNotification('reconnect', () => {
      if (signaling !== this.#signaling || this.#isClosed()) return;
      // The server lost this peer's media path but the signaling connection is fine, so the
      // join runs again on it right away.
      this.#resetMedia();
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
      this.#finish(`You were removed from #${this.#state.channel}: ${reason}.`, null, 'forbidden');
      return;
    }
    if (!isRetryable(info.error)) {
      this.#finish(null, describeError(info.error), info.error.code);
      return;
    }
    // While a join attempt runs, its pending request fails with this close and the attempt
    // schedules the retry itself.
    if (this.#state.connection === 'connected') this.#lose();
  }

  // The media path or the connection of a joined client is gone: start over from a fresh
  // connection after the first backoff delay.
  #lose(): void {
    if (this.#nodeId !== null) this.#avoid = [this.#nodeId];
    this.#resetMedia();
    this.#closeSignaling();
    this.#update({ connection: 'reconnecting' });
    this.#scheduleRetry();
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
  #resetMedia(): void {
    this.#attempt++;
    this.#session?.close();
    this.#session = null;
    this.#participants.clear();
    this.#lastHeard.clear();
    if (this.#speakingTimer) clearTimeout(this.#speakingTimer);
    this.#speakingTimer = null;
    this.#update({
      peerId: null,
      participants: [],
      activeSpeakerId: null,
      speaking: new Set(),
      serverMuted: false,
      audioBlocked: false,
      screens: [],
      sharing: this.#share ? 'starting' : 'off',
    });
  }

  #closeSignaling(): void {
    const signaling = this.#signaling;
    this.#signaling = null;
    signaling?.close();
  }

  #finish(
    closeReason: string | null,
    error: string | null = null,
    failureCode: SignalingErrorCode | null = null,
  ): void {
    if (this.#isClosed()) return;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#resetMedia();
    this.#closeSignaling();
    for (const remove of this.#cleanup.splice(0)) remove();
    this.#share?.stop();
    this.#share = null;
    this.#track?.stop();
    this.#track = null;
    this.#pushToTalkHeld = false;
    this.#update({ connection: 'closed', transmitting: false, closeReason, error, failureCode });
  }

  #putParticipant(participant: Participant): void {
    this.#participants.set(participant.id, participant);
    this.#update({ participants: [...this.#participants.values()] });
    if (participant.id !== this.#state.peerId) return;
    const newlyServerMuted = participant.serverMuted && !this.#state.serverMuted;
    this.#update({ serverMuted: participant.serverMuted });
    // The server paused the producer when the moderator acted. The client mutes as well, so the
    // microphone stays closed once the mute is lifted until the user unmutes.
    if (newlyServerMuted) this.setMuted(true);
  }

  #onAudioLevels({ levels }: VoiceNotificationData<'audioLevels'>): void {
    const now = performance.now();
    for (const { peerId } of levels) this.#lastHeard.set(peerId, now);
    this.#refreshSpeaking();
  }

  // Recomputes who is speaking and wakes up again when the next of them falls silent, so an
  // indicator clears on time even when no more level reports arrive.
  #refreshSpeaking(): void {
    const now = performance.now();
    const speaking = new Set<string>();
    let nextExpiry = Infinity;
    for (const [peerId, heardAt] of this.#lastHeard) {
      const age = now - heardAt;
      if (age < SPEAKING_WINDOW_MS) {
        speaking.add(peerId);
        nextExpiry = Math.min(nextExpiry, SPEAKING_WINDOW_MS - age);
      } else {
        this.#lastHeard.delete(peerId);
      }
    }
    if (this.#speakingTimer) clearTimeout(this.#speakingTimer);
    this.#speakingTimer = Number.isFinite(nextExpiry)
      ? setTimeout(() => this.#refreshSpeaking(), Math.ceil(nextExpiry))
      : null;
    if (!sameMembers(speaking, this.#state.speaking)) this.#update({ speaking });
  }

  #acquireMicrophone(): Promise<MediaStreamTrack | null> {
    if (this.#track?.readyState === 'live') return Promise.resolve(this.#track);
    this.#trackRequest ??= this.#openPreferredMicrophone().finally(() => {
      this.#trackRequest = null;
    });
    return this.#trackRequest;
  }

  async #openPreferredMicrophone(): Promise<MediaStreamTrack | null> {
    try {
      const preferred = this.#preferredMicrophoneId;
      const track = await openMicrophone(preferred ? { ideal: preferred } : undefined);
      if (this.#isClosed()) {
        track.stop();
        return null;
      }
      this.#useTrack(track);
      return track;
    } catch (error) {
      if (!this.#isClosed()) {
        this.#update({ microphoneError: `Microphone unavailable: ${describeError(error)}.` });
      }
      return null;
    }
  }

  #useTrack(track: MediaStreamTrack): void {
    this.#track = track;
    track.addEventListener('ended', () => void this.#onTrackEnded(track), { once: true });
    this.#update({ microphoneId: track.getSettings().deviceId ?? null, microphoneError: null });
    this.#applyMicrophone();
    void this.#refreshMicrophones();
  }

  // An unplugged microphone ends its track; the client falls back to whatever the browser
  // offers now and keeps the producer, so the others hear the new device without a rejoin.
  async #onTrackEnded(track: MediaStreamTrack): Promise<void> {
    if (track !== this.#track || this.#isClosed()) return;
    this.#track = null;
    this.#update({ microphoneError: 'The microphone was disconnected.', transmitting: false });
    const next = await this.#acquireMicrophone();
    const session = this.#session;
    if (!next || !session) return;
    try {
      if (!(await session.replaceTrack(next)) && this.#state.connection === 'connected') {
        void this.#startMicrophone(session, Promise.resolve(next));
      }
    } catch (error) {
      this.#update({ microphoneError: `Microphone unavailable: ${describeError(error)}.` });
    }
  }

  async #startMicrophone(
    session: MediaSession,
    microphone: Promise<MediaStreamTrack | null>,
  ): Promise<void> {
    const track = await microphone;
    if (!track || session !== this.#session) return;
    try {
      await session.produce(track, this.#microphonePaused());
      // The user may have picked another microphone while the producer was being created.
      if (this.#track && this.#track !== track && session === this.#session) {
        await session.replaceTrack(this.#track);
      }
    } catch (error) {
      if (session === this.#session) this.#reportActionError(error);
    }
  }

  async #refreshMicrophones(): Promise<void> {
    if (!navigator.mediaDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    if (this.#isClosed()) return;
    const inputs = devices.filter((device) => device.kind === 'audioinput');
    this.#update({
      microphones: inputs.map((device, index) => ({
        deviceId: device.deviceId,
        // Labels stay empty until the user grants microphone access.
        label: device.label || `Microphone ${index + 1}`,
      })),
    });
  }

  #microphonePaused(): boolean {
    return this.#state.muted || (this.#state.pushToTalk && !this.#pushToTalkHeld);
  }

  // Brings the producer in line with mute and push-to-talk. A refusal from the server (a
  // moderator's mute) is shown, and the session has already put the producer back as it was.
  #applyMicrophone(): void {
    const paused = this.#microphonePaused();
    this.#update({ transmitting: !paused && this.#track !== null });
    const session = this.#session;
    if (!session) return;
    session.setMicPaused(paused).catch((error: unknown) => {
      if (session !== this.#session) return;
      if (error instanceof SignalingError && error.code === 'server_muted') {
        this.#update({ muted: true, serverMuted: true, error: error.message });
        this.#applyMicrophone();
        return;
      }
      this.#reportActionError(error);
    });
  }

  #onKey(event: KeyboardEvent, down: boolean): void {
    if (!this.#state.pushToTalk || event.code !== this.#pushToTalkKey) return;
    if (isTextEntry(event.target)) return;
    // Without this the key would also press whatever button has focus, such as the
    // push-to-talk toggle itself, or scroll the page.
    event.preventDefault();
    if (down && event.repeat) return;
    this.#setPushToTalkHeld(down);
  }

  #setPushToTalkHeld(held: boolean): void {
    if (this.#pushToTalkHeld === held) return;
    this.#pushToTalkHeld = held;
    this.#applyMicrophone();
  }

  // Failures of user actions are shown, except those caused by a lost connection: the
  // reconnecting state already tells that story.
  #reportActionError(error: unknown): void {
    if (error instanceof SignalingError && error.code === 'disconnected') return;
    this.#update({ error: describeError(error) });
  }

  #listen(target: EventTarget, type: string, listener: (event: Event) => void): void {
    target.addEventListener(type, listener);
    this.#cleanup.push(() => target.removeEventListener(type, listener));
  }

  // A method rather than a comparison at each use: TypeScript keeps a narrowed property type
  // across `await`, and the state can close while an await is pending.
  #isClosed(): boolean {
    return this.#state.connection === 'closed';
  }

  #update(patch: Partial<VoiceState>): void {
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('state', this.#state);
  }
}

function openMicrophone(deviceId?: ConstrainDOMString): Promise<MediaStreamTrack> {
  if (!navigator.mediaDevices) {
    return Promise.reject(new Error('this page is not a secure context (use HTTPS)'));
  }
  return navigator.mediaDevices
    .getUserMedia({
      audio: { deviceId, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    })
    .then((stream) => {
      const [track] = stream.getAudioTracks();
      if (!track) throw new Error('the browser returned no audio track');
      return track;
    });
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

function isTextEntry(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (!(target instanceof HTMLInputElement)) return false;
  const nonText = ['button', 'checkbox', 'radio', 'range', 'submit', 'reset', 'color', 'file'];
  return !nonText.includes(target.type);
}

function sameMembers(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}

function describeShareError(error: unknown): string {
  if (error instanceof DOMException && error.name === 'NotAllowedError') {
    return 'the browser or the user refused.';
  }
  return `${describeError(error)}.`;
}

function describeError(error: unknown): string {
  if (error instanceof DOMException) {
    if (error.name === 'NotAllowedError') return 'permission denied';
    if (error.name === 'NotFoundError') return 'no microphone found';
    if (error.name === 'NotReadableError') return 'the device is in use or failed';
    if (error.name === 'OverconstrainedError') return 'that microphone is no longer available';
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
