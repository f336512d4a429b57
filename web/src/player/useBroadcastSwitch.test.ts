import type { LiveStream } from '@hearth/protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { effectScope, nextTick, shallowRef, watch, type EffectScope, type Ref } from 'vue';
import type { PlaybackReadings } from './playback';
import {
  broadcastDelaySeconds,
  useBroadcastSwitch,
  type SwitchPlayer,
  type SwitchSpectator,
} from './useBroadcastSwitch';
import type { PlayerPhase, PlayerSource } from './useHlsPlayer';
import type { ChannelShare } from './useStreamStatus';

const SUE: Omit<ChannelShare, 'broadcast' | 'moveWebrtc'> = {
  peerId: 'peer-sue',
  displayName: 'Sue',
};
// Where the api sends the share's spectators: nobody, new ones, or all of them.
const ON_WEBRTC = { ...SUE, broadcast: false, moveWebrtc: false };
const NEW_TO_BROADCAST = { ...SUE, broadcast: true, moveWebrtc: false };
const ALL_TO_BROADCAST = { ...SUE, broadcast: true, moveWebrtc: true };
const URL = 'https://edge.test/live/stage/master.m3u8';

// A player that plays whatever source it is given only when the test says it shows frames.
class FakePlayer implements SwitchPlayer {
  readonly phase = shallowRef<PlayerPhase>('idle');
  readonly readings = shallowRef<PlaybackReadings | null>(null);
  readonly muted = shallowRef(true);
  readonly sources: (PlayerSource | null)[] = [];

  constructor(readonly source: Readonly<Ref<PlayerSource | null>>) {
    watch(
      () => source.value?.url,
      () => {
        this.sources.push(source.value);
        this.phase.value = source.value ? 'loading' : 'idle';
        this.readings.value = null;
      },
      { immediate: true },
    );
  }

  setMuted(muted: boolean): void {
    this.muted.value = muted;
  }

  /** Reports a frame at `currentTime`, as the player's readings timer would. */
  showFrame(currentTime: number, latencySeconds: number | null = 4.6): void {
    this.phase.value = 'playing';
    this.readings.value = {
      currentTime,
      latencySeconds,
      latencySource: latencySeconds === null ? null : 'program-date-time',
      programDateTime: null,
      targetDuration: 2,
    };
  }
}

// A spectator that "opens" WebRTC whenever it is given a share and is not open yet. It reacts
// synchronously, before any of the switch's own watchers could run, as the earliest one could.
class FakeSpectator implements SwitchSpectator {
  readonly state = shallowRef<{ audioMuted: boolean; audioBlocked: boolean } | null>(null);
  opens = 0;
  closes = 0;

  constructor(
    readonly share: Readonly<Ref<ChannelShare | null>>,
    readonly audio = { audioMuted: false, audioBlocked: false },
  ) {
    watch(
      share,
      (value) => {
        if (value === null || this.state.value !== null) return;
        this.opens++;
        this.state.value = { ...this.audio };
      },
      { immediate: true, flush: 'sync' },
    );
  }

  close(): void {
    this.closes++;
    this.state.value = null;
  }
}

function liveStream(id = 'stream-1'): LiveStream {
  return {
    id,
    channel: 'stage',
    state: 'live',
    startedAt: '2026-12-05T04:00:00.000Z',
    endedAt: null,
    playbackUrl: URL,
    viewers: 1,
    renditions: [],
  };
}

let scope: EffectScope;

function start(audio?: { audioMuted: boolean; audioBlocked: boolean }) {
  const share = shallowRef<ChannelShare | null>(null);
  const stream = shallowRef<LiveStream | null>(null);
  scope = effectScope();
  const handle = scope.run(() =>
    useBroadcastSwitch({
      share,
      stream,
      createPlayer: (source) => new FakePlayer(source),
      createSpectator: (watched) => new FakeSpectator(watched, audio),
      switchTimeoutMs: 15_000,
    }),
  )!;
  return { share, stream, ...handle };
}

// Watching Sue's share over WebRTC; then the api bridges it and moves its WebRTC spectators.
async function watchingThenBridged(audio?: { audioMuted: boolean; audioBlocked: boolean }) {
  const page = start(audio);
  page.share.value = ON_WEBRTC;
  await nextTick();
  expect(page.spectator.state.value).not.toBeNull();
  page.stream.value = liveStream();
  page.share.value = ALL_TO_BROADCAST;
  await nextTick();
  return page;
}

// Two readings of the player half a second apart, each seen by the switch.
async function framesAdvance(player: FakePlayer, from: number): Promise<void> {
  player.showFrame(from);
  await nextTick();
  player.showFrame(from + 0.5);
  await nextTick();
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(console, 'info').mockImplementation(() => undefined);
});

afterEach(() => {
  scope?.stop();
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('useBroadcastSwitch()', () => {
  it('a spectator whose share goes on the broadcast keeps WebRTC while HLS loads hidden, and swaps only once its frames advance', async () => {
    const page = await watchingThenBridged();
    expect(page.path.value).toBe('switching');
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });
    expect(page.spectator.closes).toBe(0);

    // The element says "playing" with one reading: not yet proof that frames advance.
    page.player.showFrame(10);
    await nextTick();
    expect(page.path.value).toBe('switching');
    expect(page.spectator.closes).toBe(0);

    page.player.showFrame(10.5);
    await nextTick();
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.closes).toBe(1);
    expect(page.spectator.state.value).toBeNull();
    expect(page.moved.value).toEqual({ behindSeconds: 5 });
    // The player kept its playback: no reload at the swap.
    expect(page.player.sources).toEqual([null, { url: URL, streamId: 'stream-1' }]);
  });

  it('after the swap, later status changes neither close the spectator again nor reopen WebRTC', async () => {
    const page = await watchingThenBridged();
    await framesAdvance(page.player, 10);
    expect(page.spectator.closes).toBe(1);

    page.stream.value = liveStream();
    page.share.value = ALL_TO_BROADCAST;
    await nextTick();
    page.player.showFrame(11);
    await nextTick();
    expect(page.spectator.closes).toBe(1);
    expect(page.spectator.opens).toBe(1);
    expect(page.spectator.share.value).toBeNull();
    expect(page.path.value).toBe('broadcast');
  });

  it('the swap unmutes HLS when the WebRTC view was audible, and leaves it muted otherwise', async () => {
    const audible = await watchingThenBridged({ audioMuted: false, audioBlocked: false });
    await framesAdvance(audible.player, 10);
    expect(audible.player.muted.value).toBe(false);
    scope.stop();

    for (const audio of [
      { audioMuted: true, audioBlocked: false },
      { audioMuted: false, audioBlocked: true },
    ]) {
      const silent = await watchingThenBridged(audio);
      await framesAdvance(silent.player, 10);
      expect(silent.path.value).toBe('broadcast');
      expect(silent.player.muted.value).toBe(true);
      scope.stop();
    }
  });

  it('HLS that never plays within the timeout leaves the page on WebRTC, and the next status change tries again', async () => {
    const page = await watchingThenBridged();
    page.player.showFrame(10);
    await nextTick();
    vi.advanceTimersByTime(14_999);
    expect(page.path.value).toBe('switching');

    vi.advanceTimersByTime(1);
    await nextTick();
    expect(page.path.value).toBe('webrtc');
    expect(page.player.source.value).toBeNull();
    expect(page.spectator.closes).toBe(0);
    expect(page.spectator.state.value).not.toBeNull();
    expect(page.moved.value).toBeNull();

    // The api announces the stream again: the page tries once more, and this time HLS plays.
    page.stream.value = liveStream();
    await nextTick();
    expect(page.path.value).toBe('switching');
    await framesAdvance(page.player, 20);
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.closes).toBe(1);
    expect(page.spectator.opens).toBe(1);
  });

  it('a spectator that stops by itself while the share is on the broadcast leaves the page on HLS, not reopened', async () => {
    const page = await watchingThenBridged();
    page.player.phase.value = 'error';
    await nextTick();
    expect(page.path.value).toBe('webrtc');

    // The spectator lost its connection for good.
    page.spectator.state.value = null;
    await nextTick();
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.share.value).toBeNull();
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });
    page.share.value = ALL_TO_BROADCAST;
    await nextTick();
    expect(page.spectator.opens).toBe(1);
  });

  it('a player error gives the switch up at once, without closing WebRTC', async () => {
    const page = await watchingThenBridged();
    page.player.phase.value = 'error';
    await nextTick();
    expect(page.path.value).toBe('webrtc');
    expect(page.player.source.value).toBeNull();
    expect(page.spectator.closes).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a page that finds the share on the broadcast plays HLS and never opens WebRTC', async () => {
    const page = start();
    page.stream.value = liveStream();
    page.share.value = NEW_TO_BROADCAST;
    await nextTick();
    expect(page.path.value).toBe('broadcast');
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });
    expect(page.spectator.opens).toBe(0);
    expect(page.spectator.share.value).toBeNull();
    expect(page.moved.value).toBeNull();

    await framesAdvance(page.player, 10);
    expect(page.spectator.opens).toBe(0);
    expect(page.spectator.closes).toBe(0);
  });

  it('a page created while the share is already on the broadcast never opens WebRTC', async () => {
    const share = shallowRef<ChannelShare | null>(NEW_TO_BROADCAST);
    const stream = shallowRef<LiveStream | null>(liveStream());
    scope = effectScope();
    const page = scope.run(() =>
      useBroadcastSwitch({
        share,
        stream,
        createPlayer: (source) => new FakePlayer(source),
        createSpectator: (watched) => new FakeSpectator(watched),
      }),
    )!;
    await nextTick();
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.opens).toBe(0);
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });
  });

  it('the share going off the broadcast during a switch cancels it and keeps WebRTC', async () => {
    const page = await watchingThenBridged();
    page.share.value = ON_WEBRTC;
    await nextTick();
    expect(page.path.value).toBe('webrtc');
    expect(page.player.source.value).toBeNull();
    expect(vi.getTimerCount()).toBe(0);
    await framesAdvance(page.player, 10);
    expect(page.spectator.closes).toBe(0);
  });

  it('new spectators sent back to WebRTC leave a page on the broadcast there while it plays, and it returns to WebRTC when the broadcast ends', async () => {
    const page = await watchingThenBridged();
    await framesAdvance(page.player, 10);
    page.share.value = ON_WEBRTC;
    await nextTick();
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.opens).toBe(1);
    expect(page.moved.value).toEqual({ behindSeconds: 5 });
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });

    page.stream.value = { ...liveStream(), state: 'ended' };
    await nextTick();
    expect(page.path.value).toBe('webrtc');
    expect(page.spectator.opens).toBe(2);
    expect(page.moved.value).toBeNull();
    expect(page.player.source.value).toBeNull();
  });

  it('a page watching over WebRTC stays there while only new spectators go to the broadcast, and switches once the api moves everyone', async () => {
    const page = start();
    page.share.value = ON_WEBRTC;
    await nextTick();
    page.stream.value = liveStream();
    page.share.value = NEW_TO_BROADCAST;
    await nextTick();
    expect(page.path.value).toBe('webrtc');
    expect(page.player.source.value).toBeNull();
    expect(page.spectator.closes).toBe(0);
    expect(vi.getTimerCount()).toBe(0);

    page.share.value = ALL_TO_BROADCAST;
    await nextTick();
    expect(page.path.value).toBe('switching');
    await framesAdvance(page.player, 10);
    expect(page.path.value).toBe('broadcast');
    expect(page.spectator.closes).toBe(1);
  });

  it('the share ending after the swap leaves the player on the stream, which shows its own end', async () => {
    const page = await watchingThenBridged();
    await framesAdvance(page.player, 10);
    page.share.value = null;
    await nextTick();
    expect(page.spectator.opens).toBe(1);
    expect(page.player.source.value).toEqual({ url: URL, streamId: 'stream-1' });
    page.stream.value = { ...liveStream(), state: 'ended' };
    await nextTick();
    expect(page.player.source.value).toBeNull();
  });

  it('disposing the scope during a switch clears its timer', async () => {
    await watchingThenBridged();
    expect(vi.getTimerCount()).toBe(1);
    scope.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('broadcastDelaySeconds()', () => {
  const readings = (latencySeconds: number | null, targetDuration: number | null) => ({
    currentTime: 12,
    latencySeconds,
    latencySource: null,
    programDateTime: null,
    targetDuration,
  });

  it.each([
    ['the player’s latency, rounded', readings(5.4, 2), 5],
    ['at least one second', readings(0.2, 2), 1],
    ['three target durations without a latency figure', readings(null, 2), 6],
    ['null without either', readings(null, null), null],
    ['null without readings', null, null],
  ])('%s', (_name, input, expected) => {
    expect(broadcastDelaySeconds(input)).toBe(expected);
  });
});
