import { TypedEmitter } from './emitter';
import { actionErrorMessage, describeError } from './errors';
import type { MediaSender } from './sender';
import { SignalingError } from './signaling';

/** One microphone the browser offers. */
export interface Microphone {
  /** Id to pass to `selectMicrophone`. */
  deviceId: string;
  /** Name shown to the user. */
  label: string;
}

/** Everything there is to show about the caller's microphone. Each change is a new object. */
export interface MicrophoneState {
  /** The caller muted the microphone (or a moderator did). */
  muted: boolean;
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
}

/** Events of the local microphone. */
export type LocalMicrophoneEvents = {
  /** The state changed; the argument is the new state. */
  change: [MicrophoneState];
  /** An action on the microphone failed; the argument says why, for the user. */
  error: [string];
};

/** Settings of the local microphone. */
export interface LocalMicrophoneOptions {
  /** Microphone to prefer, if the browser still offers it. */
  preferredId: string | null;
  /** `KeyboardEvent.code` of the push-to-talk key. */
  pushToTalkKey: string;
}

/**
 * The caller's microphone: its track, which outlives joins, the devices the browser offers,
 * mute and push-to-talk (the key, or a held on-screen button), and the producer that sends it
 * on the sender of the current join. An unplugged microphone is replaced by whatever the browser
 * offers next, on the same producer.
 */
export class LocalMicrophone {
  /** State changes and failed actions. */
  readonly events = new TypedEmitter<LocalMicrophoneEvents>();
  readonly #pushToTalkKey: string;
  readonly #cleanup: (() => void)[] = [];
  #preferredId: string | null;
  #state: MicrophoneState = {
    muted: false,
    serverMuted: false,
    pushToTalk: false,
    transmitting: false,
    microphones: [],
    microphoneId: null,
    microphoneError: null,
  };
  #track: MediaStreamTrack | null = null;
  #trackRequest: Promise<MediaStreamTrack | null> | null = null;
  #sender: MediaSender | null = null;
  #pushToTalkHeld = false;
  #closed = false;

  constructor(options: LocalMicrophoneOptions) {
    this.#preferredId = options.preferredId;
    this.#pushToTalkKey = options.pushToTalkKey;
  }

  /** The current state. */
  get state(): MicrophoneState {
    return this.#state;
  }

  /** Starts listening to the push-to-talk key and to microphones being plugged in or out. */
  start(): void {
    this.#listen(window, 'keydown', (event) => this.#onKey(event as KeyboardEvent, true));
    this.#listen(window, 'keyup', (event) => this.#onKey(event as KeyboardEvent, false));
    this.#listen(window, 'blur', () => this.#setPushToTalkHeld(false));
    if (navigator.mediaDevices) {
      this.#listen(navigator.mediaDevices, 'devicechange', () => void this.#refreshMicrophones());
    }
  }

  /**
   * The live microphone track, opening the preferred microphone if there is none yet; null when
   * the browser or the user refused, which `microphoneError` then says.
   */
  acquire(): Promise<MediaStreamTrack | null> {
    if (this.#track?.readyState === 'live') return Promise.resolve(this.#track);
    this.#trackRequest ??= this.#openPreferred().finally(() => {
      this.#trackRequest = null;
    });
    return this.#trackRequest;
  }

  /** Sends `track`, once it is there, on the sender of a join that just connected. */
  attach(sender: MediaSender, track: Promise<MediaStreamTrack | null>): void {
    this.#sender = sender;
    void this.#send(sender, track);
  }

  /** The join ended: its sender is gone, and a moderator's mute with it. */
  detach(): void {
    this.#sender = null;
    this.#update({ serverMuted: false });
  }

  /** Mutes or unmutes. Unmuting while a moderator holds a mute is refused by the server. */
  setMuted(muted: boolean): void {
    if (this.#closed) return;
    this.#update({ muted });
    this.#apply();
  }

  /** Records whether a moderator holds a mute on the caller, as the server announced. */
  setServerMuted(serverMuted: boolean): void {
    if (!this.#closed) this.#update({ serverMuted });
  }

  /** Turns push-to-talk mode on or off. */
  setPushToTalk(enabled: boolean): void {
    if (this.#closed) return;
    this.#pushToTalkHeld = false;
    this.#update({ pushToTalk: enabled });
    this.#apply();
  }

  /** Opens the microphone while `held` in push-to-talk mode: the on-screen push-to-talk key. */
  holdToTalk(held: boolean): void {
    if (!this.#closed) this.#setPushToTalkHeld(held);
  }

  /** Switches to another microphone without interrupting the stream. */
  async select(deviceId: string): Promise<void> {
    if (this.#closed) return;
    this.#preferredId = deviceId;
    let track: MediaStreamTrack;
    try {
      track = await openMicrophone({ exact: deviceId });
    } catch (error) {
      this.events.safeEmit('error', `Could not switch microphones: ${describeError(error)}`);
      return;
    }
    const sender = this.#sender;
    let replaced = false;
    try {
      replaced = sender ? await sender.replaceMicrophoneTrack(track) : false;
    } catch (error) {
      // The producer still sends the previous microphone, which therefore keeps running.
      track.stop();
      this.events.safeEmit('error', `Could not switch microphones: ${describeError(error)}`);
      return;
    }
    if (this.#closed) {
      track.stop();
      return;
    }
    const previous = this.#track;
    this.#useTrack(track);
    previous?.stop();
    if (!replaced && sender && sender === this.#sender) {
      void this.#send(sender, Promise.resolve(track));
    }
  }

  /** Stops the track and the listeners; the microphone is done. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const remove of this.#cleanup.splice(0)) remove();
    this.#sender = null;
    this.#track?.stop();
    this.#track = null;
    this.#pushToTalkHeld = false;
    this.#update({ transmitting: false });
  }

  async #openPreferred(): Promise<MediaStreamTrack | null> {
    try {
      const preferred = this.#preferredId;
      const track = await openMicrophone(preferred ? { ideal: preferred } : undefined);
      if (this.#closed) {
        track.stop();
        return null;
      }
      this.#useTrack(track);
      return track;
    } catch (error) {
      if (!this.#closed) {
        this.#update({ microphoneError: `Microphone unavailable: ${describeError(error)}.` });
      }
      return null;
    }
  }

  #useTrack(track: MediaStreamTrack): void {
    this.#track = track;
    track.addEventListener('ended', () => void this.#onTrackEnded(track), { once: true });
    this.#update({ microphoneId: track.getSettings().deviceId ?? null, microphoneError: null });
    this.#apply();
    void this.#refreshMicrophones();
  }

  // An unplugged microphone ends its track; the client falls back to whatever the browser
  // offers now and keeps the producer, so the others hear the new device without a rejoin.
  async #onTrackEnded(track: MediaStreamTrack): Promise<void> {
    if (track !== this.#track || this.#closed) return;
    this.#track = null;
    this.#update({ microphoneError: 'The microphone was disconnected.', transmitting: false });
    const next = await this.acquire();
    const sender = this.#sender;
    if (!next || !sender) return;
    try {
      if (!(await sender.replaceMicrophoneTrack(next))) {
        void this.#send(sender, Promise.resolve(next));
      }
    } catch (error) {
      this.#update({ microphoneError: `Microphone unavailable: ${describeError(error)}.` });
    }
  }

  async #send(sender: MediaSender, microphone: Promise<MediaStreamTrack | null>): Promise<void> {
    const track = await microphone;
    if (!track || sender !== this.#sender) return;
    try {
      await sender.sendMicrophone(track, this.#paused());
      // The user may have picked another microphone while the producer was being created.
      if (this.#track && this.#track !== track && sender === this.#sender) {
        await sender.replaceMicrophoneTrack(this.#track);
      }
    } catch (error) {
      if (sender === this.#sender) this.#reportActionError(error);
    }
  }

  async #refreshMicrophones(): Promise<void> {
    if (!navigator.mediaDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    if (this.#closed) return;
    const inputs = devices.filter((device) => device.kind === 'audioinput');
    this.#update({
      microphones: inputs.map((device, index) => ({
        deviceId: device.deviceId,
        // Labels stay empty until the user grants microphone access.
        label: device.label || `Microphone ${index + 1}`,
      })),
    });
  }

  #paused(): boolean {
    return this.#state.muted || (this.#state.pushToTalk && !this.#pushToTalkHeld);
  }

  // Brings the producer in line with mute and push-to-talk. A refusal from the server (a
  // moderator's mute) is shown, and the sender has already put the producer back as it was.
  #apply(): void {
    const paused = this.#paused();
    this.#update({ transmitting: !paused && this.#track !== null });
    const sender = this.#sender;
    if (!sender) return;
    sender.setMicrophonePaused(paused).catch((error: unknown) => {
      if (sender !== this.#sender) return;
      if (error instanceof SignalingError && error.code === 'server_muted') {
        this.#update({ muted: true, serverMuted: true });
        this.events.safeEmit('error', error.message);
        this.#apply();
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
    this.#apply();
  }

  #reportActionError(error: unknown): void {
    const message = actionErrorMessage(error);
    if (message !== null) this.events.safeEmit('error', message);
  }

  #listen(target: EventTarget, type: string, listener: (event: Event) => void): void {
    target.addEventListener(type, listener);
    this.#cleanup.push(() => target.removeEventListener(type, listener));
  }

  #update(patch: Partial<MicrophoneState>): void {
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('change', this.#state);
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

function isTextEntry(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (!(target instanceof HTMLInputElement)) return false;
  const nonText = ['button', 'checkbox', 'radio', 'range', 'submit', 'reset', 'color', 'file'];
  return !nonText.includes(target.type);
}
