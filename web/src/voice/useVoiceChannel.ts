import { onScopeDispose, shallowRef, type Ref } from 'vue';
import { installDebugHook } from './debug-hook';
import { DeviceLoader } from './device-loader';
import type { SharePresetId } from '@hearth/protocol';
import { VoiceClient, type VoiceState } from './voice-client';

/** Settings of `useVoiceChannel`. */
export interface UseVoiceChannelOptions {
  /** Exposes the client as `window.__hearth` for automated tests and benchmarks. */
  debugHook?: boolean;
  /** `relay` forces media through the api's TURN servers; `all` (the default) lets ICE choose. */
  iceTransportPolicy?: RTCIceTransportPolicy;
}

/** What `useVoiceChannel` returns: the client's state and the actions on it. */
export interface VoiceChannel {
  /** State of the current client, or null before the first join. */
  state: Readonly<Ref<VoiceState | null>>;
  /** Joins a channel, replacing any earlier client. */
  join(channel: string, displayName: string, microphoneId?: string | null): void;
  /** Leaves; the closed state stays visible until the next join. */
  leave(): void;
  /** Mutes or unmutes the microphone. */
  setMuted(muted: boolean): void;
  /** Turns incoming audio off or on. */
  setDeafened(deafened: boolean): void;
  /** Turns push-to-talk mode on or off. */
  setPushToTalk(enabled: boolean): void;
  /** Opens the microphone while held in push-to-talk mode (the on-screen talk button). */
  holdToTalk(held: boolean): void;
  /** Switches microphones. */
  selectMicrophone(deviceId: string): void;
  /** Moderator action: mutes or releases another participant for everyone; rejects if refused. */
  setServerMuted(peerId: string, muted: boolean): Promise<void>;
  /** Starts audio blocked by the autoplay policy; call it from a click. */
  enableAudio(): void;
  /** Shares a screen with the preset named `presetId` (the default one when left out). */
  startShare(presetId?: SharePresetId): void;
  /** Stops the caller's screen share. */
  stopShare(): void;
  /** Moderator action: stops another participant's screen share; rejects if refused. */
  stopShareOf(peerId: string): Promise<void>;
  /** Asks for the simulcast layer of a received screen share that fits its tile (0 lowest). */
  setScreenLayer(consumerId: string, spatialLayer: number): void;
  /** Loads the media device ahead of the first join, so joining is faster. */
  prepare(): void;
}

/**
 * A voice channel client with Vue state. It owns the client it creates and leaves the channel,
 * stops the microphone and removes the debug hook when the calling scope is disposed.
 */
export function useVoiceChannel(options: UseVoiceChannelOptions = {}): VoiceChannel {
  const state = shallowRef<VoiceState | null>(null);
  let client: VoiceClient | null = null;
  let release: (() => void) | null = null;
  const devices = new DeviceLoader();

  function join(channel: string, displayName: string, microphoneId: string | null = null): void {
    release?.();
    const next = new VoiceClient({
      channel,
      displayName,
      microphoneId,
      devices,
      iceTransportPolicy: options.iceTransportPolicy,
    });
    const stopState = next.events.on('state', (value) => {
      state.value = value;
    });
    const removeHook = options.debugHook ? installDebugHook(next) : null;
    client = next;
    release = () => {
      next.leave();
      stopState();
      removeHook?.();
    };
    state.value = next.state;
    next.join();
  }

  onScopeDispose(() => {
    release?.();
    release = null;
    client = null;
  });

  return {
    state,
    join,
    leave: () => client?.leave(),
    setMuted: (muted) => client?.setMuted(muted),
    setDeafened: (deafened) => void client?.setDeafened(deafened),
    setPushToTalk: (enabled) => client?.setPushToTalk(enabled),
    holdToTalk: (held) => client?.holdToTalk(held),
    selectMicrophone: (deviceId) => void client?.selectMicrophone(deviceId),
    setServerMuted: async (peerId, muted) => {
      if (!client) throw new Error('not in a channel');
      await client.setServerMuted(peerId, muted);
    },
    enableAudio: () => void client?.enableAudio(),
    startShare: (presetId) => void client?.startShare(presetId),
    stopShare: () => client?.stopShare(),
    stopShareOf: async (peerId) => {
      if (!client) throw new Error('not in a channel');
      await client.stopShareOf(peerId);
    },
    setScreenLayer: (consumerId, spatialLayer) => client?.setScreenLayer(consumerId, spatialLayer),
    prepare: () => devices.preload(),
  };
}
