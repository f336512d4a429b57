import { DEFAULT_SHARE_PRESET, type Participant, type SharePresetId } from '@hearth/protocol';
import { ChannelLink, type ChannelJoin, type LinkState } from './channel-link';
import { DeviceLoader } from './device-loader';
import { TypedEmitter } from './emitter';
import { actionErrorMessage, describeError } from './errors';
import { LocalMicrophone, type MicrophoneState } from './microphone';
import { locateAsGuest, type LocateVoiceNode } from './placement';
import { MediaReceiver, type InboundAudioStats, type RemoteScreen } from './receiver';
import { Roster, type RosterState } from './roster';
import { ScreenShare, type ShareLayerStats } from './screen-share';
import { MediaSender } from './sender';
import { SignalingError, type SignalingClient } from './signaling';
import { clientStatsBetween, sampleOf, type StatsSample } from './link-stats';

// How often the client reports its connection's statistics to the voice node: often enough for
// the node to adapt the microphone's bitrate within 5 s of loss starting.
const STATS_REPORT_INTERVAL_MS = 2000;

/** Where the caller's own screen share is: none, being set up, or received by the others. */
export type ShareStatus = 'off' | 'starting' | 'live';

/** Everything there is to show about a voice client. Each change produces a new object. */
export interface VoiceState extends LinkState, RosterState, MicrophoneState {
  /** The channel this client joins. */
  channel: string;
  /** The caller's display name. */
  displayName: string;
  /** The caller turned off all incoming audio, and with it the microphone. */
  deafened: boolean;
  /** The browser blocked playback until the user interacts; call `enableAudio()` from a click. */
  audioBlocked: boolean;
  /** The caller's own screen share. */
  sharing: ShareStatus;
  /** Preset of the caller's share while there is one. */
  sharePreset: SharePresetId | null;
  /** The heaviest share preset the channel allows, as of the latest join. */
  maxSharePreset: SharePresetId;
  /** Screen shares of the others, in the order they arrived. */
  screens: readonly RemoteScreen[];
  /** The last error worth showing to the user. */
  error: string | null;
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
  /** `relay` forces media through the api's TURN servers (`?relay=1`, for tests). */
  iceTransportPolicy?: RTCIceTransportPolicy;
}

/**
 * A voice channel client. Its link joins and rejoins the channel; each join gets a roster, a
 * receiver for the others' microphones and screens, and a sender for the caller's microphone and
 * screen share, which outlive joins. Everything is reported through `state`. One client serves
 * one visit to one channel: after `leave()` it is done, and joining again takes a new client.
 */
export class VoiceClient {
  /** State changes. */
  readonly events = new TypedEmitter<VoiceClientEvents>();
  readonly #link: ChannelLink;
  readonly #roster = new Roster();
  readonly #microphone: LocalMicrophone;
  readonly #cleanup: (() => void)[] = [];
  #state: VoiceState;
  #receiver: MediaReceiver | null = null;
  #sender: MediaSender | null = null;
  #stopFollowingShareStops: (() => void) | null = null;
  #statsTimer: ReturnType<typeof setInterval> | null = null;
  #share: ScreenShare | null = null;
  // The microphone track being opened for the current join attempt.
  #microphoneTrack: Promise<MediaStreamTrack | null> = Promise.resolve(null);
  // Deafening mutes the microphone; undeafening restores the mute state from before.
  #mutedBeforeDeafen = false;
  #timings: JoinTimings = { joinStartedAt: null, firstRemoteAudioAt: null };

  constructor(options: VoiceClientOptions) {
    this.#link = new ChannelLink({
      channel: options.channel,
      locate: options.locate ?? locateAsGuest(options.channel, options.displayName),
      devices: options.devices ?? new DeviceLoader(),
      iceTransportPolicy: options.iceTransportPolicy,
      handler: {
        onAttempt: () => this.#onAttempt(),
        onJoined: (join) => this.#onJoined(join),
        onConnected: () => this.#onConnected(),
        onReset: () => this.#onReset(),
        onClose: () => this.#onClose(),
      },
    });
    this.#microphone = new LocalMicrophone({
      preferredId: options.microphoneId ?? null,
      pushToTalkKey: options.pushToTalkKey ?? 'Space',
    });
    this.#state = {
      ...this.#link.state,
      ...this.#roster.state,
      ...this.#microphone.state,
      channel: options.channel,
      displayName: options.displayName,
      deafened: false,
      audioBlocked: false,
      sharing: 'off',
      sharePreset: null,
      maxSharePreset: 'source',
      screens: [],
      error: null,
    };
    this.#link.events.on('state', (link) => this.#update(link));
    this.#link.events.on('problem', (error) => this.#update({ error }));
    this.#roster.events.on('change', (roster) => this.#update(roster));
    this.#roster.events.on('participantPut', (participant) => this.#onParticipantPut(participant));
    this.#microphone.events.on('change', (microphone) => this.#update(microphone));
    this.#microphone.events.on('error', (error) => this.#update({ error }));
  }

  /** The current state. */
  get state(): VoiceState {
    return this.#state;
  }

  /** Timestamps of the latest join attempt, for join-latency measurements. */
  get timings(): JoinTimings {
    return { ...this.#timings };
  }

  /** The voice node the client was last placed on. */
  get nodeId(): string | null {
    return this.#link.nodeId;
  }

  /** Connects and joins the channel; progress and failures are reported through `state`. */
  join(): void {
    if (this.#state.connection !== 'idle') return;
    this.#microphone.start();
    // Nobody sees the shares of a hidden tab, so they stop flowing until it shows again.
    const onVisibility = () => this.#receiver?.setScreensHidden(document.hidden);
    document.addEventListener('visibilitychange', onVisibility);
    this.#cleanup.push(() => document.removeEventListener('visibilitychange', onVisibility));
    this.#link.open();
  }

  /** Leaves the channel and releases everything: media, microphone, connection. Idempotent. */
  leave(): void {
    this.#link.close();
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
    this.#update({ error: null });
    this.#microphone.setMuted(muted);
  }

  /**
   * Turns all incoming audio off or on, locally at once and on the server. Deafening mutes the
   * microphone too; undeafening restores the mute state from before.
   */
  async setDeafened(deafened: boolean): Promise<void> {
    if (this.#isClosed() || deafened === this.#state.deafened) return;
    if (deafened) this.#mutedBeforeDeafen = this.#state.muted;
    const muted = deafened || this.#mutedBeforeDeafen || this.#state.serverMuted;
    this.#update({ deafened, error: null });
    this.#microphone.setMuted(muted);
    this.#receiver?.setDeafened(deafened);
    // Until the join completes there is nothing to tell the server: the join flow applies the
    // current setting itself.
    const signaling = this.#link.signaling;
    if (!signaling) return;
    try {
      await signaling.request('setDeafened', { deafened });
    } catch (error) {
      if (signaling === this.#link.signaling) this.#reportActionError(error);
    }
  }

  /** Turns push-to-talk mode on or off. */
  setPushToTalk(enabled: boolean): void {
    this.#microphone.setPushToTalk(enabled);
  }

  /**
   * Opens the microphone while `held` in push-to-talk mode: the on-screen counterpart of the
   * push-to-talk key, for touch screens.
   */
  holdToTalk(held: boolean): void {
    this.#microphone.holdToTalk(held);
  }

  /** Switches to another microphone without interrupting the stream. */
  async selectMicrophone(deviceId: string): Promise<void> {
    await this.#microphone.select(deviceId);
  }

  /**
   * Moderator action: mutes another participant for everyone, or lifts that mute. Rejects with
   * the server's refusal, for the caller to show next to the control that asked.
   */
  async setServerMuted(peerId: string, muted: boolean): Promise<void> {
    const signaling = this.#link.signaling;
    if (!signaling) {
      throw new SignalingError('not_joined', 'not connected to the channel right now');
    }
    await signaling.request('setServerMuted', { peerId, muted });
  }

  /** Starts audio that the browser's autoplay policy blocked; call it from a user gesture. */
  async enableAudio(): Promise<void> {
    const receiver = this.#receiver;
    if (!receiver) {
      this.#update({ audioBlocked: false });
      return;
    }
    if (await receiver.resumePlayback()) this.#update({ audioBlocked: false });
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
    const sender = this.#sender;
    if (sender && this.#state.connection === 'connected') void share.attach(sender);
  }

  /** Stops the caller's screen share, if any. */
  stopShare(): void {
    this.#share?.stop();
  }

  /**
   * Moderator action: stops another participant's screen share. Rejects with the server's
   * refusal (a sharer who is not ranked lower), for the caller to show next to the tile.
   */
  async stopShareOf(peerId: string): Promise<void> {
    const signaling = this.#link.signaling;
    if (!signaling) {
      throw new SignalingError('not_joined', 'not connected to the channel right now');
    }
    await signaling.request('stopShare', { peerId });
  }

  /** Asks for the simulcast layer of a received screen share that fits its tile (0 lowest). */
  setScreenLayer(consumerId: string, spatialLayer: number): void {
    this.#receiver?.setScreenLayer(consumerId, spatialLayer);
  }

  /** Counters of each simulcast layer of the caller's screen share. */
  async shareLayerStats(): Promise<ShareLayerStats[]> {
    return (await this.#share?.layerStats()) ?? [];
  }

  /** Byte and packet counters of every remote audio stream of the current join. */
  async inboundAudio(): Promise<InboundAudioStats[]> {
    return (await this.#receiver?.inboundAudio()) ?? [];
  }

  /**
   * Closes the signaling socket the way a network failure would. The client sees an unexpected
   * loss and recovers by itself; this exists for tests of that recovery.
   */
  dropSignaling(): void {
    this.#link.dropSignaling();
  }

  // The microphone opens while the connection is set up, so the permission prompt and the
  // device start overlap with placement and signaling.
  #onAttempt(): void {
    this.#timings = { joinStartedAt: performance.now(), firstRemoteAudioAt: null };
    this.#microphoneTrack = this.#microphone.acquire();
  }

  async #onJoined({ signaling, device, joined, assertCurrent, ice }: ChannelJoin): Promise<void> {
    this.#roster.follow(signaling, joined);
    this.#update({ maxSharePreset: joined.maxSharePreset });
    // A moderator stopped the caller's share: the server closed its producers already.
    this.#stopFollowingShareStops = signaling.onNotification(
      'shareStopped',
      ({ producerIds, message }) => this.#share?.closedByServer(producerIds, message),
    );
    // A deafened caller's consumers must start paused, so the server learns it before the
    // receive transport exists.
    if (this.#state.deafened) {
      await signaling.request('setDeafened', { deafened: true });
      assertCurrent();
    }
    const receiver = new MediaReceiver({
      signaling,
      device,
      deafened: this.#state.deafened,
      screensHidden: document.hidden,
      ice,
    });
    const sender = new MediaSender({ signaling, device, ice });
    this.#receiver = receiver;
    this.#sender = sender;
    this.#followReceiver(receiver);
    sender.events.on('failed', () => {
      if (this.#sender === sender) this.#link.restart();
    });
    await Promise.all([receiver.open(), sender.open()]);
    this.#reportStats(signaling, receiver, sender);
  }

  // Every few seconds the client tells the node what it measured of its own connection; the
  // node judges everyone's link from those reports. A report that fails is simply not counted.
  #reportStats(signaling: SignalingClient, receiver: MediaReceiver, sender: MediaSender): void {
    let previous: StatsSample | null = null;
    const sample = () =>
      void Promise.all([receiver.transportStats(), sender.transportStats()])
        .then((reports) => {
          if (this.#receiver !== receiver) return;
          const current = sampleOf(
            reports.filter((report) => report !== null),
            performance.now(),
          );
          if (previous) {
            void signaling
              .request('reportStats', clientStatsBetween(previous, current))
              .catch(() => undefined);
          }
          previous = current;
        })
        .catch(() => undefined);
    sample();
    this.#statsTimer = setInterval(sample, STATS_REPORT_INTERVAL_MS);
  }

  #followReceiver(receiver: MediaReceiver): void {
    const current = () => this.#receiver === receiver;
    receiver.events.on('firstRemoteAudio', (at) => {
      if (current()) this.#timings.firstRemoteAudioAt = at;
    });
    receiver.events.on('autoplayBlocked', () => this.#update({ audioBlocked: true }));
    receiver.events.on('failed', () => {
      if (current()) this.#link.restart();
    });
    receiver.events.on('screenAdded', (screen) => {
      if (current()) this.#update({ screens: [...this.#state.screens, screen] });
    });
    receiver.events.on('screenRemoved', (consumerId) => {
      if (!current()) return;
      this.#update({ screens: this.#state.screens.filter((s) => s.consumerId !== consumerId) });
    });
    receiver.events.on('screenUpdated', (screen) => {
      if (!current()) return;
      this.#update({
        screens: this.#state.screens.map((s) => (s.consumerId === screen.consumerId ? screen : s)),
      });
    });
  }

  // Listening works from here on; the microphone may still wait for the user's permission. A
  // share started before this join, or kept from the one before a reconnect, goes out on this
  // join's sender, which takes the microphone first.
  #onConnected(): void {
    const sender = this.#sender;
    if (!sender) return;
    this.#microphone.attach(sender, this.#microphoneTrack);
    if (this.#share) void this.#share.attach(sender);
  }

  #onReset(): void {
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    this.#statsTimer = null;
    this.#stopFollowingShareStops?.();
    this.#stopFollowingShareStops = null;
    this.#receiver?.close();
    this.#receiver = null;
    this.#sender?.close();
    this.#sender = null;
    this.#microphone.detach();
    this.#roster.clear();
    this.#update({
      audioBlocked: false,
      screens: [],
      sharing: this.#share ? 'starting' : 'off',
    });
  }

  #onClose(): void {
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    this.#statsTimer = null;
    for (const remove of this.#cleanup.splice(0)) remove();
    this.#share?.stop();
    this.#share = null;
    this.#microphone.close();
  }

  #onParticipantPut(participant: Participant): void {
    if (participant.id !== this.#state.peerId) return;
    const newlyServerMuted = participant.serverMuted && !this.#state.serverMuted;
    this.#microphone.setServerMuted(participant.serverMuted);
    // The server paused the producer when the moderator acted. The client mutes as well, so the
    // microphone stays closed once the mute is lifted until the user unmutes.
    if (newlyServerMuted) this.setMuted(true);
  }

  #reportActionError(error: unknown): void {
    const message = actionErrorMessage(error);
    if (message !== null) this.#update({ error: message });
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

function describeShareError(error: unknown): string {
  if (error instanceof DOMException && error.name === 'NotAllowedError') {
    return 'the browser or the user refused.';
  }
  return `${describeError(error)}.`;
}
