import {
  mediaSourceSchema,
  shareCaptureSchema,
  type MediaSource,
  type ShareCapture,
} from '@hearth/protocol';
import type { types } from 'mediasoup-client';
import { warn } from '../log';
import { TypedEmitter } from './emitter';
import type { JoinIce } from './channel-link';
import type { SignalingClient } from './signaling';
import { superviseTransport } from './transport-recovery';
import { toTransportOptions, toWireRtpParameters } from './wire';

/** What `MediaSender.send` sends, besides the microphone. */
export interface SendOptions {
  /** The track to send. */
  track: MediaStreamTrack;
  /** What the track is, as the server is told. */
  source: MediaSource;
  /** Simulcast layers of a video track. */
  encodings?: RTCRtpEncodingParameters[];
  /** Codec settings, such as the encoder's start bitrate. */
  codecOptions?: types.ProducerCodecOptions;
  /** Whether closing the producer stops the track (the default); false when its owner does. */
  stopTracks?: boolean;
  /** What the encoder gives up first when bandwidth runs short. */
  degradationPreference?: RTCDegradationPreference;
  /** A screen share's capture size and rate, which its broadcast stays under. */
  capture?: ShareCapture;
}

/** Events of a media sender. */
export type MediaSenderEvents = {
  /** The transport could not be recovered by restarting ICE; the sender must be replaced. */
  failed: [Error];
};

/** Settings of a media sender. */
export interface MediaSenderOptions {
  /** The signaling connection of the join. */
  signaling: SignalingClient;
  /** The loaded mediasoup-client Device. */
  device: types.Device;
  /** TURN servers and ICE policy of the join. */
  ice: JoinIce;
}

// Settings the microphone producer is created with: in-band FEC rides out packet loss, DTX
// saves bandwidth during silence, and a voice channel has no use for stereo.
// Opus may use up to 64 kbit/s, the best level the node adapts the bitrate between.
const MICROPHONE_CODEC_OPTIONS: types.ProducerCodecOptions = {
  opusFec: true,
  opusDtx: true,
  opusStereo: false,
  opusMaxAverageBitrate: 64_000,
};

/**
 * The sending side of one join: a send transport, the microphone producer with its mute kept in
 * step with the server, and whatever else `send` sends, such as a screen share, whose simulcast
 * layers the server may switch off and on. A sender never outlives its join: after a reconnect
 * the client builds a new one.
 */
export class MediaSender {
  /** Failure events. */
  readonly events = new TypedEmitter<MediaSenderEvents>();
  readonly #signaling: SignalingClient;
  readonly #device: types.Device;
  readonly #ice: JoinIce;
  readonly #unsubscribe: () => void;
  // Video producers made by `send`, which the server may tell to switch layers off and on.
  readonly #sentVideo = new Map<string, types.Producer>();
  // Changes to RTP senders' parameters, one at a time: each reads the parameters the previous
  // one wrote.
  #senderUpdates: Promise<void> = Promise.resolve();
  #transport: types.Transport | null = null;
  #stopSupervising: (() => void) | null = null;
  #microphone: types.Producer | null = null;
  #producingMicrophone = false;
  #wantPaused = false;
  #serverPaused = false;
  #micSync: Promise<void> = Promise.resolve();
  // The microphone's bitrate cap the node asked for, in bit/s; null until it asks.
  #microphoneMaxBitrate: number | null = null;
  #closed = false;

  constructor(options: MediaSenderOptions) {
    this.#signaling = options.signaling;
    this.#device = options.device;
    this.#ice = options.ice;
    const unsubscribes = [
      this.#signaling.onNotification('shareLayers', ({ producerId, activeLayers }) => {
        const producer = this.#sentVideo.get(producerId);
        if (producer) {
          this.#updateSender(producer, (parameters) => activateLayers(parameters, activeLayers));
        }
      }),
      // The node adapts the microphone's bitrate to the loss on this client's link.
      this.#signaling.onNotification('audioBitrate', ({ maxBitrateKbps }) => {
        this.#microphoneMaxBitrate = maxBitrateKbps * 1000;
        this.#applyMicrophoneBitrate();
      }),
    ];
    this.#unsubscribe = () => {
      for (const unsubscribe of unsubscribes) unsubscribe();
    };
  }

  /** True once the sender closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Creates the send transport. */
  async open(): Promise<void> {
    const info = await this.#signaling.request('createTransport', { direction: 'send' });
    if (this.#closed) return;
    const transport = this.#device.createSendTransport(toTransportOptions(info, this.#ice));
    this.#transport = transport;
    this.#stopSupervising = superviseTransport(transport, this.#signaling, (error) => {
      if (!this.#closed) this.events.safeEmit('failed', error);
    });
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      this.#signaling
        .request('produce', {
          transportId: transport.id,
          kind,
          rtpParameters: toWireRtpParameters(rtpParameters),
          paused: appData.paused === true,
          source: mediaSourceSchema.safeParse(appData.source).data ?? 'microphone',
          capture: shareCaptureSchema.safeParse(appData.capture).data,
        })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
  }

  /**
   * Starts sending the microphone. `paused` is the mute state to start in; later changes made
   * with `setMicrophonePaused` while this runs are applied once the producer exists.
   */
  async sendMicrophone(track: MediaStreamTrack, paused: boolean): Promise<void> {
    const transport = this.#transport;
    if (!transport || this.#closed || this.#microphone || this.#producingMicrophone) return;
    this.#producingMicrophone = true;
    this.#wantPaused = paused;
    // A track kept from an earlier join may still be disabled by that join's paused producer;
    // the new producer decides from here on.
    track.enabled = true;
    try {
      const producer = await transport.produce({
        track,
        codecOptions: MICROPHONE_CODEC_OPTIONS,
        // The client keeps the microphone across reconnects, so closing a producer must not
        // stop its track.
        stopTracks: false,
        appData: { paused },
      });
      if (this.#closed) {
        producer.close();
        return;
      }
      this.#microphone = producer;
      this.#serverPaused = paused;
      if (this.#microphoneMaxBitrate !== null) this.#applyMicrophoneBitrate();
      producer.on('transportclose', () => {
        if (this.#microphone === producer) this.#microphone = null;
      });
      if (this.#wantPaused) producer.pause();
      if (this.#wantPaused !== paused) await this.setMicrophonePaused(this.#wantPaused);
    } finally {
      this.#producingMicrophone = false;
    }
  }

  /**
   * Pauses or resumes the microphone: locally at once, then on the server. Requests run one at a
   * time and each sends only the latest wanted state, so a burst of push-to-talk presses costs
   * at most one request per change that is still current. Rejects with the server's refusal.
   */
  setMicrophonePaused(paused: boolean): Promise<void> {
    this.#wantPaused = paused;
    const producer = this.#microphone;
    if (!producer) return Promise.resolve();
    if (paused) producer.pause();
    else producer.resume();
    const sync = this.#micSync.then(() => this.#pushMicrophonePaused());
    this.#micSync = sync.catch(() => undefined);
    return sync;
  }

  /** Sends another microphone track on the existing producer; false if there is none yet. */
  async replaceMicrophoneTrack(track: MediaStreamTrack): Promise<boolean> {
    const producer = this.#microphone;
    if (!producer || producer.closed) return false;
    await producer.replaceTrack({ track });
    return true;
  }

  /**
   * Sends a track other than the microphone, such as a screen share; resolves with its producer,
   * or null when the sender closed meanwhile. Rejects with the server's refusal.
   */
  async send(options: SendOptions): Promise<types.Producer | null> {
    const transport = this.#transport;
    if (!transport || this.#closed) return null;
    const producer = await transport.produce({
      track: options.track,
      encodings: options.encodings,
      codecOptions: options.codecOptions,
      stopTracks: options.stopTracks ?? true,
      appData: { source: options.source, capture: options.capture },
    });
    if (this.#closed) {
      producer.close();
      return null;
    }
    const { degradationPreference } = options;
    if (degradationPreference) {
      this.#updateSender(producer, (parameters) => {
        parameters.degradationPreference = degradationPreference;
      });
    }
    if (producer.kind === 'video') {
      this.#sentVideo.set(producer.id, producer);
      producer.observer.on('close', () => this.#sentVideo.delete(producer.id));
    }
    return producer;
  }

  /** Stops sending a producer made by `send`: on the server, then locally. */
  stopSending(producer: types.Producer): void {
    if (producer.closed) return;
    producer.close();
    if (this.#closed) return;
    this.#signaling.request('closeProducer', { producerId: producer.id }).catch((error) => {
      // A producer whose transport or peer is gone is closed on the server already.
      if (!this.#closed) warn('could not stop sending a track', error);
    });
  }

  /** The send transport's WebRTC statistics, or null before it exists. */
  async transportStats(): Promise<RTCStatsReport | null> {
    return this.#transport && !this.#transport.closed ? this.#transport.getStats() : null;
  }

  /** Closes the transport and every producer; the tracks keep running. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#stopSupervising?.();
    this.#microphone?.close();
    this.#microphone = null;
    this.#transport?.close();
    this.events.removeAllListeners();
  }

  /** The microphone's bitrate cap the node last asked for, in bit/s, or null. */
  get microphoneMaxBitrate(): number | null {
    return this.#microphoneMaxBitrate;
  }

  #applyMicrophoneBitrate(): void {
    const producer = this.#microphone;
    const maxBitrate = this.#microphoneMaxBitrate;
    if (!producer || producer.closed || maxBitrate === null) return;
    producer.setRtpEncodingParameters({ maxBitrate }).catch((error: unknown) => {
      warn('the microphone bitrate could not be set', error);
    });
  }

  async #pushMicrophonePaused(): Promise<void> {
    const producer = this.#microphone;
    const paused = this.#wantPaused;
    if (!producer || this.#closed || paused === this.#serverPaused) return;
    try {
      await this.#signaling.request('setProducerPaused', { producerId: producer.id, paused });
      this.#serverPaused = paused;
    } catch (error) {
      // The server kept its state, so the local producer goes back to match it.
      if (this.#microphone === producer && this.#wantPaused === paused) {
        this.#wantPaused = this.#serverPaused;
        if (this.#serverPaused) producer.pause();
        else producer.resume();
      }
      throw error;
    }
  }

  #updateSender(
    producer: types.Producer,
    change: (parameters: RTCRtpSendParameters) => void,
  ): void {
    this.#senderUpdates = this.#senderUpdates.then(async () => {
      const sender = producer.rtpSender;
      if (!sender || producer.closed || this.#closed) return;
      const parameters = sender.getParameters();
      change(parameters);
      await sender.setParameters(parameters).catch((error: unknown) => {
        if (!producer.closed) warn('could not change how a track is sent', error);
      });
    });
  }
}

// Keeps the lowest `activeLayers` simulcast encodings sending and switches the others off.
function activateLayers(parameters: RTCRtpSendParameters, activeLayers: number): void {
  parameters.encodings.forEach((encoding, index) => {
    encoding.active = index < activeLayers;
  });
}
