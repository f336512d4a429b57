import type { ShareRouting } from '@hearth/protocol';

/**
 * The routing policy of a screen share's audience: which path a new spectator takes (WebRTC
 * through the SFU, or HLS from the broadcast ladder), when the WebRTC→HLS bridge runs, and when
 * the spectators already on WebRTC move over. It is a pure function of what the api knows, so
 * every api instance given the same inputs decides alike.
 */

/** The path a spectator watches a share on. */
export type SpectatorPath = 'webrtc' | 'hls';

/** Thresholds of the policy (the `API_HANDOFF_*` settings). */
export interface HandoffSettings {
  /** Spectators at which new spectators go to HLS (`API_HANDOFF_VIEWERS`, at least 1). */
  viewers: number;
  /**
   * Fraction of `viewers` at which the bridge starts, so HLS is playable by the time it is
   * needed (`API_HANDOFF_PREWARM`, 0..1).
   */
  prewarm: number;
  /**
   * Fraction of `viewers` the audience must fall below before new spectators get WebRTC again
   * (`API_HANDOFF_RELEASE`, 0..1): the hysteresis on the way down.
   */
  release: number;
}

/** Room left on the voice nodes that carry a share, as the registry reports their load. */
export interface ShareCapacity {
  /** mediasoup consumers the share's nodes can still open, all nodes together. */
  consumersLeft: number;
  /** Bitrate the share's nodes can still send, in kbit/s, all nodes together. */
  bitrateLeftKbps: number;
  /** Busy share of the most loaded of the share's nodes, 0..1. */
  cpu: number;
}

/** Everything the policy decides from. */
export interface HandoffInput {
  /** Spectators of the share: every watch page, on either path. */
  spectators: number;
  /** Of those, the ones watching over HLS. */
  hlsSpectators: number;
  /** Room left on the share's voice nodes. */
  capacity: ShareCapacity;
  /** What one more WebRTC spectator costs: consumers (video, share audio, microphone). */
  consumersPerSpectator: number;
  /** What one more WebRTC spectator costs in bitrate, kbit/s (the share's top layer and audio). */
  bitratePerSpectatorKbps: number;
  /** The operator's choice for the share. */
  routing: ShareRouting;
  /** Whether the bridge's HLS is playable on the edge now. */
  bridgeReady: boolean;
  /** Where the previous decision sent new spectators: the hysteresis works from it. */
  previous: SpectatorPath;
  /** The policy's thresholds. */
  settings: HandoffSettings;
}

/** What the policy decides for a share. */
export interface HandoffDecision {
  /** The path a new spectator takes. */
  newSpectators: SpectatorPath;
  /** Whether the bridge should run: start it if it does not, stop it if it does and this is false. */
  bridge: boolean;
  /** Whether the spectators on WebRTC should move to HLS now (the bridge being ready). */
  moveWebrtcSpectators: boolean;
}

/** CPU share of a node past which it takes no more WebRTC spectators. */
export const CPU_BUSY = 0.85;
/** CPU share of a node past which its WebRTC spectators move to HLS. */
export const CPU_OVERLOADED = 0.95;

/** Decides where a share's new spectators go and whether the bridge runs. */
export function decideHandoff(input: HandoffInput): HandoffDecision {
  const { settings, capacity } = input;
  if (input.routing === 'webrtc') {
    return { newSpectators: 'webrtc', bridge: false, moveWebrtcSpectators: false };
  }
  if (input.routing === 'broadcast') {
    return {
      newSpectators: input.bridgeReady ? 'hls' : 'webrtc',
      bridge: true,
      moveWebrtcSpectators: input.bridgeReady,
    };
  }
  const full =
    capacity.consumersLeft < input.consumersPerSpectator ||
    capacity.bitrateLeftKbps < input.bitratePerSpectatorKbps ||
    capacity.cpu >= CPU_BUSY;
  const crowded =
    input.previous === 'hls'
      ? input.spectators >= settings.viewers * settings.release
      : input.spectators >= settings.viewers;
  const wantsHls = full || crowded;
  const bridge =
    wantsHls ||
    input.hlsSpectators > 0 ||
    input.spectators >= Math.ceil(settings.viewers * settings.prewarm);
  return {
    // Until HLS is playable, a new spectator waits on WebRTC if there is room for it.
    newSpectators: wantsHls && (input.bridgeReady || full) ? 'hls' : 'webrtc',
    bridge,
    moveWebrtcSpectators: input.bridgeReady && capacity.cpu >= CPU_OVERLOADED,
  };
}
