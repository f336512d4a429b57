// `window.__hearth` exists for automated browser tests and benchmarks: they drive real pages and
// read the client's state, received audio counters and join timings through it, and simulate a
// network drop. The app itself never reads it.
import type { Participant } from '@hearth/protocol';
import type { ConnectionState } from './channel-link';
import type { InboundAudioStats, RemoteScreen } from './receiver';
import type { ShareLayerStats } from './screen-share';
import type { SpectatorClient } from './spectator-client';
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

/** What `window.__hearthSpectator.state()` reports. */
export interface HearthSpectatorState {
  /** The page watches a screen share over WebRTC; false while it shows the channel's stream. */
  spectating: boolean;
  /** Connection state of the spectator, or null while not spectating. */
  connection: ConnectionState | null;
  /** The spectator's peer id while joined. */
  peerId: string | null;
  /** Peers sharing a screen, as the spectator's roster says. */
  sharerIds: string[];
  /** Screen shares the page receives. */
  screens: HearthDebugScreen[];
}

/** The test hook installed as `window.__hearthSpectator` by the watch view. */
export interface HearthSpectatorHook {
  /** A snapshot of the spectator. */
  state(): HearthSpectatorState;
  /** Byte and packet counters of every audio stream the spectator receives. */
  inboundAudio(): Promise<InboundAudioStats[]>;
}

declare global {
  interface Window {
    /** Test and benchmark hook of the open voice channel view; see `HearthDebugHook`. */
    __hearth?: HearthDebugHook;
    /** Test hook of the open watch view's spectator; see `HearthSpectatorHook`. */
    __hearthSpectator?: HearthSpectatorHook;
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
        screens: state.screens.map(debugScreenOf),
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

/**
 * Exposes the spectator of a watch page, whichever `current()` returns at the time of a call, as
 * `window.__hearthSpectator`; returns the function that removes it again.
 */
export function installSpectatorDebugHook(current: () => SpectatorClient | null): () => void {
  const hook: HearthSpectatorHook = {
    state() {
      const state = current()?.state ?? null;
      return {
        spectating: state !== null,
        connection: state?.connection ?? null,
        peerId: state?.peerId ?? null,
        sharerIds: [...(state?.sharerIds ?? [])],
        screens: (state?.screens ?? []).map(debugScreenOf),
      };
    },
    inboundAudio: async () => (await current()?.inboundAudio()) ?? [],
  };
  window.__hearthSpectator = hook;
  return () => {
    if (window.__hearthSpectator === hook) delete window.__hearthSpectator;
  };
}

function debugScreenOf(screen: RemoteScreen): HearthDebugScreen {
  const { consumerId, peerId, spatialLayer, preferredSpatialLayer } = screen;
  return { consumerId, peerId, spatialLayer, preferredSpatialLayer };
}
