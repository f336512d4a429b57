import {
  SHARE_LOW_LAYER_MAX_BITRATE,
  sharePreset,
  topBitrateOf,
  type SharePreset,
  type SharePresetId,
} from '@hearth/protocol';
import type { types } from 'mediasoup-client';
import { TypedEmitter } from './emitter';
import type { MediaSender } from './sender';
import { SignalingError } from './signaling';

// The low simulcast layer: at most half the captured size and no taller than this.
const LOW_LAYER_MAX_HEIGHT = 540;
// The source preset asks for this frame rate at most.
const SOURCE_MAX_FRAME_RATE = 60;
// Where the encoder starts before bandwidth estimation has measured the path, in kbit/s: high
// enough that the first frames of a screen are legible.
const START_BITRATE_KBPS = 1_000;

/**
 * The simulcast layer a tile shown `displayHeight` device pixels tall needs: the top one (1) once
 * it is taller than the low layer can be, the low one (0) otherwise.
 */
export function screenLayerFor(displayHeight: number): number {
  return displayHeight > LOW_LAYER_MAX_HEIGHT ? 1 : 0;
}

/**
 * The two simulcast layers of a capture `height` pixels tall: a low one at most half the size
 * and 600 kbit/s, then the full size at `topBitrate` and `frameRate`.
 */
export function shareEncodingsOf(
  height: number,
  frameRate: number,
  topBitrate: number,
): RTCRtpEncodingParameters[] {
  return [
    {
      scaleResolutionDownBy: Math.max(2, height / LOW_LAYER_MAX_HEIGHT),
      maxBitrate: SHARE_LOW_LAYER_MAX_BITRATE,
    },
    { scaleResolutionDownBy: 1, maxBitrate: topBitrate, maxFramerate: frameRate },
  ];
}

/** Counters of one simulcast layer the sharer sends, from its `outbound-rtp` stats. */
export interface ShareLayerStats {
  /** The layer's RTP stream id (`r0` low, `r1` top). */
  rid: string | null;
  /** RTP payload bytes sent so far. */
  bytesSent: number;
  /** Frames encoded so far. */
  framesEncoded: number;
  /** Width of the last encoded frame, or 0 before the first. */
  frameWidth: number;
  /** Height of the last encoded frame, or 0 before the first. */
  frameHeight: number;
}

/** Events of a screen share. */
export type ScreenShareEvents = {
  /** The video producer exists: viewers receive the share. */
  live: [];
  /** The share ended: stopped by the user or the browser, or refused with `reason`. */
  ended: [reason: string | null];
};

/**
 * One screen share: the captured screen (and tab or system audio, where the browser gives it)
 * and its producers on the media sender of the current join. The capture outlives a sender,
 * so after a reconnect the same share is sent again on the new one; it ends when the user or
 * the browser stops it, or when the server refuses it.
 */
export class ScreenShare {
  /** Going live and ending. */
  readonly events = new TypedEmitter<ScreenShareEvents>();
  readonly #preset: SharePreset;
  readonly #video: MediaStreamTrack;
  readonly #audio: MediaStreamTrack | null;
  #sender: MediaSender | null = null;
  #producers: types.Producer[] = [];
  #ended = false;

  private constructor(
    preset: SharePreset,
    video: MediaStreamTrack,
    audio: MediaStreamTrack | null,
  ) {
    this.#preset = preset;
    this.#video = video;
    this.#audio = audio;
    // Text on a screen must stay legible: the encoder keeps the resolution and gives up frame
    // rate instead when bandwidth runs short.
    video.contentHint = 'detail';
    // The browser's own "stop sharing" ends the track.
    video.addEventListener('ended', () => this.stop(), { once: true });
  }

  /** Asks the browser for a screen, window or tab to share under the preset named `presetId`. */
  static async capture(presetId: SharePresetId): Promise<ScreenShare> {
    if (!navigator.mediaDevices?.getDisplayMedia) {
      throw new Error('this browser cannot share a screen here (a secure context is needed)');
    }
    const preset = sharePreset(presetId);
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: captureConstraintsOf(preset),
      audio: true,
    });
    const [video] = stream.getVideoTracks();
    if (!video) {
      for (const track of stream.getTracks()) track.stop();
      throw new Error('the browser returned no video track');
    }
    return new ScreenShare(preset, video, stream.getAudioTracks()[0] ?? null);
  }

  /**
   * Sends the share on `sender`: the video as VP8 simulcast, then the audio. A refusal from the
   * server (no grant, the channel's share cap) ends the share with the server's reason; a lost
   * connection leaves it for the next sender.
   */
  async attach(sender: MediaSender): Promise<void> {
    if (this.#ended || this.#sender === sender) return;
    this.#sender = sender;
    this.#producers = [];
    try {
      const video = await this.#produceVideo(sender);
      if (!video) return;
      this.events.safeEmit('live');
      if (this.#audio?.readyState === 'live') {
        const audio = await sender.send({
          track: this.#audio,
          source: 'screen-audio',
          stopTracks: false,
        });
        if (audio) this.#keep(sender, audio);
      }
    } catch (error) {
      if (this.#ended || sender.closed || this.#sender !== sender) return;
      if (error instanceof SignalingError && error.code === 'disconnected') return;
      this.#end(
        `Screen share refused: ${error instanceof Error ? error.message : String(error)}`,
        false,
      );
    }
  }

  /** Byte, frame and size counters of each simulcast layer sent right now. */
  async layerStats(): Promise<ShareLayerStats[]> {
    const video = this.#producers.find((producer) => producer.kind === 'video');
    if (!video || video.closed) return [];
    const layers: ShareLayerStats[] = [];
    (await video.getStats()).forEach((stat: RTCStats) => {
      if (stat.type !== 'outbound-rtp') return;
      const outbound = stat as RTCOutboundRtpStreamStats;
      layers.push({
        rid: outbound.rid ?? null,
        bytesSent: outbound.bytesSent ?? 0,
        framesEncoded: outbound.framesEncoded ?? 0,
        frameWidth: outbound.frameWidth ?? 0,
        frameHeight: outbound.frameHeight ?? 0,
      });
    });
    return layers.sort((a, b) => (a.rid ?? '').localeCompare(b.rid ?? ''));
  }

  /** Stops sharing: closes the producers on the server and stops the capture. Idempotent. */
  stop(): void {
    this.#end(null, false);
  }

  /**
   * The server closed the producers named `producerIds`, as when a moderator stops a share: if
   * they are this share's, it ends with `message` as its reason, and the capture stops.
   */
  closedByServer(producerIds: readonly string[], message: string): void {
    if (this.#producers.some((producer) => producerIds.includes(producer.id))) {
      this.#end(message, true);
    }
  }

  async #produceVideo(sender: MediaSender): Promise<types.Producer | null> {
    const settings = this.#video.getSettings();
    const height = settings.height ?? this.#preset.height ?? 1080;
    const frameRate = Math.round(settings.frameRate ?? this.#preset.frameRate ?? 30);
    const width = settings.width ?? widthOf(height);
    const producer = await sender.send({
      track: this.#video,
      source: 'screen',
      encodings: shareEncodingsOf(
        height,
        frameRate,
        topBitrateOf(this.#preset, width, height, frameRate),
      ),
      codecOptions: { videoGoogleStartBitrate: START_BITRATE_KBPS },
      stopTracks: false,
      degradationPreference: 'maintain-resolution',
      capture: { width, height, fps: frameRate },
    });
    if (producer) this.#keep(sender, producer);
    return producer;
  }

  // Holds a producer while it belongs to the current sender and the share goes on; otherwise
  // it is closed at once.
  #keep(sender: MediaSender, producer: types.Producer): void {
    if (this.#ended || this.#sender !== sender) {
      sender.stopSending(producer);
      return;
    }
    this.#producers.push(producer);
  }

  // Producers the server closed already are only closed here; otherwise the server is asked to.
  #end(reason: string | null, closedByServer: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    const sender = this.#sender;
    for (const producer of this.#producers) {
      if (closedByServer) producer.close();
      else sender?.stopSending(producer);
    }
    this.#producers = [];
    this.#sender = null;
    this.#video.stop();
    this.#audio?.stop();
    this.events.safeEmit('ended', reason);
    this.events.removeAllListeners();
  }
}

function widthOf(height: number): number {
  return Math.round((height * 16) / 9);
}

function captureConstraintsOf(preset: SharePreset): MediaTrackConstraints {
  if (preset.height === null || preset.frameRate === null) {
    return { frameRate: { ideal: SOURCE_MAX_FRAME_RATE, max: SOURCE_MAX_FRAME_RATE } };
  }
  const width = widthOf(preset.height);
  return {
    width: { ideal: width, max: width },
    height: { ideal: preset.height, max: preset.height },
    frameRate: { ideal: preset.frameRate, max: preset.frameRate },
  };
}
