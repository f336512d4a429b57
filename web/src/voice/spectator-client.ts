import { ChannelLink, type ChannelJoin, type LinkState } from './channel-link';
import { DeviceLoader } from './device-loader';
import { TypedEmitter } from './emitter';
import { locateAsSpectator, type LocateVoiceNode } from './placement';
import { MediaReceiver, type InboundAudioStats, type RemoteScreen } from './receiver';
import { Roster, type RosterState } from './roster';

/** Everything there is to show about a spectator. Each change produces a new object. */
export interface SpectatorState extends LinkState, RosterState {
  /** The channel watched. */
  channel: string;
  /** The channel's screen shares, in the order they arrived. */
  screens: readonly RemoteScreen[];
  /** Peers sharing a screen now, as the roster says. */
  sharerIds: readonly string[];
  /**
   * True once joined and the channel has no share left: nobody in the roster shares and no
   * share is received. The page then goes back to the channel's stream.
   */
  shareOver: boolean;
  /** Share audio and commentary are muted on this page. */
  audioMuted: boolean;
  /** The browser blocked playback until the user interacts; call `enableAudio()` from a click. */
  audioBlocked: boolean;
  /** The last error worth showing to the user. */
  error: string | null;
}

/** Events of a spectator client. */
export type SpectatorClientEvents = {
  /** The state changed; the argument is the new state. */
  state: [SpectatorState];
};

/** Settings of a spectator client. */
export interface SpectatorClientOptions {
  /** Channel to watch. */
  channel: string;
  /** Name of the guest session to watch as while nobody is signed in; the remembered one if left out. */
  guestName?: string;
  /** Finds the node to connect to; defaults to asking the api for a spectator's placement. */
  locate?: LocateVoiceNode;
  /** Shared Device loader. */
  devices?: DeviceLoader;
}

/**
 * A receive-only client of a channel's screen shares: it joins as a spectator, in no roster and
 * sending nothing, and receives every share's video and audio and the microphone of each
 * sharer. Tiles ask for the layer their size needs, and a hidden tab pauses the video, as for
 * voice participants. It rejoins by itself after a loss; after `close()` it is done.
 */
export class SpectatorClient {
  /** State changes. */
  readonly events = new TypedEmitter<SpectatorClientEvents>();
  readonly #link: ChannelLink;
  readonly #roster = new Roster();
  readonly #cleanup: (() => void)[] = [];
  #receiver: MediaReceiver | null = null;
  #state: SpectatorState;

  constructor(options: SpectatorClientOptions) {
    this.#link = new ChannelLink({
      channel: options.channel,
      locate: options.locate ?? locateAsSpectator(options.channel, options.guestName),
      devices: options.devices ?? new DeviceLoader(),
      handler: {
        onAttempt: () => undefined,
        onJoined: (join) => this.#onJoined(join),
        onConnected: () => this.#refreshShareOver(),
        onReset: () => this.#onReset(),
        onClose: () => {
          for (const remove of this.#cleanup.splice(0)) remove();
        },
      },
    });
    this.#state = {
      ...this.#link.state,
      ...this.#roster.state,
      channel: options.channel,
      screens: [],
      sharerIds: [],
      shareOver: false,
      audioMuted: false,
      audioBlocked: false,
      error: null,
    };
    this.#link.events.on('state', (link) => this.#update(link));
    this.#link.events.on('problem', (error) => this.#update({ error }));
    this.#roster.events.on('change', (roster) => {
      const sharerIds = roster.participants
        .filter((participant) => participant.sharing)
        .map((participant) => participant.id);
      this.#update({ ...roster, sharerIds });
      this.#refreshShareOver();
    });
  }

  /** The current state. */
  get state(): SpectatorState {
    return this.#state;
  }

  /** Connects and starts receiving the channel's shares. */
  open(): void {
    if (this.#state.connection !== 'idle') return;
    // Nobody sees the shares of a hidden tab, so they stop flowing until it shows again.
    const onVisibility = () => this.#receiver?.setScreensHidden(document.hidden);
    document.addEventListener('visibilitychange', onVisibility);
    this.#cleanup.push(() => document.removeEventListener('visibilitychange', onVisibility));
    this.#link.open();
  }

  /** Stops watching and releases everything. Idempotent. */
  close(): void {
    this.#link.close();
  }

  /** Asks for the simulcast layer of a share that fits its tile (0 lowest). */
  setScreenLayer(consumerId: string, spatialLayer: number): void {
    this.#receiver?.setScreenLayer(consumerId, spatialLayer);
  }

  /** Mutes or unmutes the shares' audio and the sharers' microphones on this page. */
  setAudioMuted(muted: boolean): void {
    this.#update({ audioMuted: muted });
    this.#receiver?.setDeafened(muted);
  }

  /** Starts audio that the browser's autoplay policy blocked; call it from a user gesture. */
  async enableAudio(): Promise<void> {
    const receiver = this.#receiver;
    if (!receiver || (await receiver.resumePlayback())) this.#update({ audioBlocked: false });
  }

  /** Byte and packet counters of every audio stream received. */
  async inboundAudio(): Promise<InboundAudioStats[]> {
    return (await this.#receiver?.inboundAudio()) ?? [];
  }

  /** The voice node the client was last placed on. */
  get nodeId(): string | null {
    return this.#link.nodeId;
  }

  async #onJoined({ signaling, device, joined, ice }: ChannelJoin): Promise<void> {
    // A server that ignored the request to spectate would have put this page in the roster.
    if (!joined.spectator) throw new Error('the server admitted this page as a participant');
    this.#roster.follow(signaling, joined);
    const receiver = new MediaReceiver({
      signaling,
      device,
      deafened: this.#state.audioMuted,
      screensHidden: document.hidden,
      ice,
    });
    this.#receiver = receiver;
    const current = () => this.#receiver === receiver;
    receiver.events.on('autoplayBlocked', () => this.#update({ audioBlocked: true }));
    receiver.events.on('failed', () => {
      if (current()) this.#link.restart();
    });
    receiver.events.on('screenAdded', (screen) => {
      if (current()) this.#setScreens([...this.#state.screens, screen]);
    });
    receiver.events.on('screenRemoved', (consumerId) => {
      if (current())
        this.#setScreens(this.#state.screens.filter((s) => s.consumerId !== consumerId));
    });
    receiver.events.on('screenUpdated', (screen) => {
      if (!current()) return;
      this.#setScreens(
        this.#state.screens.map((s) => (s.consumerId === screen.consumerId ? screen : s)),
      );
    });
    await receiver.open();
  }

  #onReset(): void {
    this.#receiver?.close();
    this.#receiver = null;
    this.#roster.clear();
    this.#update({ screens: [], audioBlocked: false, shareOver: false });
  }

  #setScreens(screens: readonly RemoteScreen[]): void {
    this.#update({ screens });
    this.#refreshShareOver();
  }

  #refreshShareOver(): void {
    const shareOver =
      this.#state.connection === 'connected' &&
      this.#state.screens.length === 0 &&
      this.#state.sharerIds.length === 0;
    if (shareOver !== this.#state.shareOver) this.#update({ shareOver });
  }

  #update(patch: Partial<SpectatorState>): void {
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('state', this.#state);
  }
}
