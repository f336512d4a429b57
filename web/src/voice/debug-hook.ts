// `window.__hearth` exists for automated browser tests and benchmarks: they drive real pages and
// read the client's state, received audio counters and join timings through it, and simulate a
// network drop. The app itself never reads it.
import type { Participant } from '@hearth/protocol';
import type { ConnectionState } from './channel-link';
import type { InboundAudioStats } from './receiver';
import type { ShareLayerStats } from './screen-share';
import type { JoinTimings, ShareStatus, VoiceClient } from './voice-client';

/** A screen share the page receives, as `window.__hearth.state()` reports it. */
export interface HearthDebugScreen {
  /** The consumer carrying its video. */
  consumerId: string;
  /** The participant who shares. */
  peerId: string;
  /** The simulcast layer received, or null while none flows. */
  spatialLayer: number | null;
  /** The layer the tile asked for, or null before it asked. */
  preferredSpatialLayer: number | null;
}

/** What `window.__hearth.state()` reports. */
export interface HearthDebugState {
  /** Connection state of the voice client. */
  connection: ConnectionState;
  /** The caller's peer id while joined. */
  peerId: string | null;
  /** The channel being joined or in, or null once the client is idle or closed. */
  channel: string | null;
  /** Everyone in the channel, the caller included. */
  participants: Participant[];
  /** The dominant speaker, if any. */
  activeSpeakerId: string | null;
  /** Successful joins, rejoins included. */
  joinCount: number;
  /** The microphone is muted (deafening mutes it too). */
  muted: boolean;
  /** Incoming audio is off. */
  deafened: boolean;
  /** The caller's own screen share. */
  sharing: ShareStatus;
  /** Screen shares of the others that the page receives. */
  screens: HearthDebugScreen[];
}

/** The test and benchmark hook installed as `window.__hearth` by the channel view. */
export interface HearthDebugHook {
  /** A snapshot of the client's state. */
  state(): HearthDebugState;
  /** Byte and packet counters of every remote audio stream, from `inbound-rtp` stats. */
  inboundAudio(): Promise<InboundAudioStats[]>;
  /** Counters of each simulcast layer of the caller's screen share, from `outbound-rtp` stats. */
  shareLayers(): Promise<ShareLayerStats[]>;
  /** `performance.now()` timestamps of the latest join. */
  timings(): JoinTimings;
  /** Closes the signaling socket as a network drop would; the client must recover by itself. */
  dropSignaling(): void;
  /** The voice node the client was last placed on. */
  nodeId(): string | null;
}

declare global {
  interface Window {
    /** Test and benchmark hook of the open voice channel view; see `HearthDebugHook`. */
    __hearth?: HearthDebugHook;
  }
}

/** Exposes a voice client as `window.__hearth`; returns the function that removes it again. */
export function installDebugHook(client: VoiceClient): () => void {
  const hook: HearthDebugHook = {
    state() {
      const state = client.state;
      const active = state.connection !== 'idle' && state.connection !== 'closed';
      return {
        connection: state.connection,
        peerId: state.peerId,
        channel: active ? state.channel : null,
        participants: state.participants.map((participant) => ({ ...participant })),
        activeSpeakerId: state.activeSpeakerId,
        joinCount: state.joinCount,
        muted: state.muted,
        deafened: state.deafened,
        sharing: state.sharing,
        screens: state.screens.map(
          ({ consumerId, peerId, spatialLayer, preferredSpatialLayer }) => ({
            consumerId,
            peerId,
            spatialLayer,
            preferredSpatialLayer,
          }),
        ),
      };
    },
    inboundAudio: () => client.inboundAudio(),
    shareLayers: () => client.shareLayerStats(),
    timings: () => client.timings,
    dropSignaling: () => client.dropSignaling(),
    nodeId: () => client.nodeId,
  };
  window.__hearth = hook;
  return () => {
    if (window.__hearth === hook) delete window.__hearth;
  };
}
