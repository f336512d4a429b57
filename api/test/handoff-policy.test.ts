import { describe, expect, it } from 'vitest';
import { decideHandoff, type HandoffInput } from '../src/handoff/policy';

const ROOMY = { consumersLeft: 10_000, bitrateLeftKbps: 1_000_000, cpu: 0.2 };

// A share with room to spare, handing off at 10 spectators, warming at 5, released below 6.
function input(changes: Partial<HandoffInput> = {}): HandoffInput {
  return {
    spectators: 0,
    hlsSpectators: 0,
    capacity: ROOMY,
    consumersPerSpectator: 3,
    bitratePerSpectatorKbps: 5_000,
    routing: 'auto',
    bridgeReady: false,
    previous: 'webrtc',
    settings: { viewers: 10, prewarm: 0.5, release: 0.6 },
    ...changes,
  };
}

describe('the handoff policy', () => {
  it.each([
    // spectators, bridge ready, new spectators, bridge
    [0, false, 'webrtc', false],
    [4, false, 'webrtc', false],
    [5, false, 'webrtc', true],
    [9, false, 'webrtc', true],
    // Crowded, but HLS is not playable yet: they wait on WebRTC while there is room.
    [10, false, 'webrtc', true],
    [10, true, 'hls', true],
    [500, true, 'hls', true],
  ] as const)(
    'at %i spectators (bridge ready: %s) sends new spectators to %s, bridge on: %s',
    (spectators, bridgeReady, path, bridge) => {
      expect(decideHandoff(input({ spectators, bridgeReady }))).toEqual({
        newSpectators: path,
        bridge,
        moveWebrtcSpectators: false,
      });
    },
  );

  it.each([
    // spectators, previous path, new spectators
    [9, 'webrtc', 'webrtc'],
    [9, 'hls', 'hls'],
    [6, 'hls', 'hls'],
    [5, 'hls', 'webrtc'],
  ] as const)(
    'hysteresis: at %i spectators after routing to %s, new spectators go to %s',
    (spectators, previous, path) => {
      expect(decideHandoff(input({ spectators, previous, bridgeReady: true })).newSpectators).toBe(
        path,
      );
    },
  );

  it('keeps the bridge while anyone watches over HLS, and stops it once nobody needs it', () => {
    expect(decideHandoff(input({ spectators: 2, hlsSpectators: 1, bridgeReady: true }))).toEqual({
      newSpectators: 'webrtc',
      bridge: true,
      moveWebrtcSpectators: false,
    });
    expect(
      decideHandoff(input({ spectators: 2, hlsSpectators: 0, bridgeReady: true })).bridge,
    ).toBe(false);
  });

  it.each([
    ['consumers', { ...ROOMY, consumersLeft: 2 }],
    ['bitrate', { ...ROOMY, bitrateLeftKbps: 4_000 }],
    ['CPU', { ...ROOMY, cpu: 0.9 }],
  ] as const)('a share whose nodes run out of %s sends new spectators to HLS', (_, capacity) => {
    // Even before HLS is playable: there is no room to wait in.
    expect(decideHandoff(input({ spectators: 1, capacity }))).toEqual({
      newSpectators: 'hls',
      bridge: true,
      moveWebrtcSpectators: false,
    });
  });

  it('moves the WebRTC spectators of an overloaded node once HLS is playable', () => {
    const overloaded = { ...ROOMY, cpu: 0.97 };
    expect(decideHandoff(input({ spectators: 3, capacity: overloaded })).moveWebrtcSpectators).toBe(
      false,
    );
    expect(
      decideHandoff(input({ spectators: 3, capacity: overloaded, bridgeReady: true })),
    ).toEqual({ newSpectators: 'hls', bridge: true, moveWebrtcSpectators: true });
  });

  it('an operator forces WebRTC only, or broadcast now', () => {
    expect(decideHandoff(input({ spectators: 900, routing: 'webrtc', bridgeReady: true }))).toEqual(
      { newSpectators: 'webrtc', bridge: false, moveWebrtcSpectators: false },
    );
    expect(decideHandoff(input({ spectators: 1, routing: 'broadcast' }))).toEqual({
      newSpectators: 'webrtc',
      bridge: true,
      moveWebrtcSpectators: false,
    });
    expect(
      decideHandoff(input({ spectators: 1, routing: 'broadcast', bridgeReady: true })),
    ).toEqual({ newSpectators: 'hls', bridge: true, moveWebrtcSpectators: true });
  });

  it('API_HANDOFF_VIEWERS=1 hands off from the first spectator', () => {
    const settings = { viewers: 1, prewarm: 0.5, release: 0.6 };
    expect(decideHandoff(input({ settings })).bridge).toBe(false);
    expect(decideHandoff(input({ settings, spectators: 1, bridgeReady: true }))).toEqual({
      newSpectators: 'hls',
      bridge: true,
      moveWebrtcSpectators: false,
    });
  });
});
