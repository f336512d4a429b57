import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SPEED_POLICY,
  parseProgressLine,
  SpeedWindow,
  stderrSeverity,
} from '../src/ffmpeg-progress';

describe('parseProgressLine()', () => {
  // Lines as Debian's ffmpeg 5.1 prints them with -loglevel level+info (fluent-ffmpeg splits on \r).
  // prettier-ignore
  it.each([
    [
      'a ladder line with one q= per output',
      '[info] frame=   34 fps= 29 q=31.0 q=27.0 size=N/A time=00:00:01.13 bitrate=N/A dup=2 drop=0 speed=0.964x    ',
      { frame: 34, fps: 29, timeSec: 1.13, speed: 0.964 },
    ],
    [
      'the final line with Lq=',
      '[info] frame=  265 fps= 30 q=-1.0 Lq=-1.0 size=N/A time=00:00:08.89 bitrate=N/A dup=2 drop=0 speed=0.99x    ',
      { frame: 265, fps: 30, timeSec: 8.89, speed: 0.99 },
    ],
    [
      'speed=N/A before ffmpeg can tell',
      '[info] frame=    1 fps=0.0 q=-0.0 size=N/A time=00:00:00.03 bitrate=N/A speed=N/A    ',
      { frame: 1, fps: 0, timeSec: 0.03, speed: null },
    ],
    [
      'a padded speed',
      '[info] frame=   30 fps=0.0 q=-0.0 Lsize=N/A time=00:00:01.00 bitrate=N/A speed= 128x    ',
      { frame: 30, fps: 0, timeSec: 1, speed: 128 },
    ],
    [
      'the negative time of 5.1 before the first timestamp',
      '[info] frame=    0 fps=0.0 q=0.0 size=N/A time=-577014:32:22.77 bitrate=N/A speed=N/A    ',
      { frame: 0, fps: 0, timeSec: null, speed: null },
    ],
    [
      'an exponent speed and hours',
      'frame=99999 fps=1200 q=-0.0 size=N/A time=01:02:03.50 bitrate=N/A speed=1.2e+03x',
      { frame: 99999, fps: 1200, timeSec: 3723.5, speed: 1200 },
    ],
  ])('parseProgressLine() of %s', (_title, line, expected) => {
    expect(parseProgressLine(line)).toEqual(expected);
  });

  it.each([
    "[info] Input #0, flv, from 'in720.flv':",
    "[hls @ 0x5558656f6e40] [info] Opening 'out/480p30/seg_00004.ts.tmp' for writing",
    '[error] nonexist.flv: No such file or directory',
    '',
  ])('parseProgressLine(%j) is null', (line) => {
    expect(parseProgressLine(line)).toBeNull();
  });
});

describe('stderrSeverity()', () => {
  // prettier-ignore
  it.each([
    ['[info] frame=   34 fps= 29 q=31.0 size=N/A time=00:00:01.13 bitrate=N/A speed=0.964x', 'progress'],
    ['[info]   libavutil      57. 28.100 / 57. 28.100', 'info'],
    ["[hls @ 0x5558656f6e40] [info] Opening 'a/index.m3u8.tmp' for writing", 'info'],
    ['[libx264 @ 0x55d1c5a0b880] [warning] VBV bitrate (4400) > level limit (2000)', 'warning'],
    ['[error] nonexist.flv: No such file or directory', 'error'],
    ['[rtmp @ 0x5644a5707100] [error] Cannot read RTMP handshake response', 'error'],
    ['[fatal] something fatal', 'error'],
    ['a continuation line without a tag', 'info'],
  ])('stderrSeverity(%j) is %s', (line, severity) => {
    expect(stderrSeverity(line)).toBe(severity);
  });
});

describe('SpeedWindow', () => {
  const policy = { minSpeed: 0.95, windowMs: 10_000, warmupMs: 5_000 };

  // Feeds one progress sample every 500 ms (ffmpeg's stats period) at a steady pace.
  function feed(window: SpeedWindow, fromMs: number, toMs: number, pace: number, fromSec: number) {
    let timeSec = fromSec;
    for (let at = fromMs; at <= toMs; at += 500) {
      window.add(timeSec, at);
      timeSec += pace * 0.5;
    }
    return timeSec;
  }

  it('speed() ignores samples taken during the warm-up', () => {
    const window = new SpeedWindow(policy, 0);
    feed(window, 0, 4_500, 0.2, 0);
    expect(window.speed()).toBeUndefined();
    expect(window.spanMs).toBe(0);
  });

  it('speed() is undefined until the window spans a second, then output seconds per second', () => {
    const window = new SpeedWindow(policy, 0);
    window.add(10, 5_000);
    window.add(10.4, 5_500);
    expect(window.speed()).toBeUndefined();
    window.add(10.8, 6_000);
    expect(window.speed()).toBeCloseTo(0.8, 6);
  });

  it("speed() follows the recent pace, unlike ffmpeg's average since start", () => {
    const window = new SpeedWindow(policy, 0);
    const t = feed(window, 5_000, 60_000, 1.0, 5);
    feed(window, 60_500, 80_000, 0.5, t);
    expect(window.speed()).toBeCloseTo(0.5, 2);
    expect(window.spanMs).toBeGreaterThanOrEqual(10_000);
    expect(window.spanMs).toBeLessThan(10_500);
  });

  it('isBehind() is false until a full window after the warm-up is below the minimum', () => {
    const window = new SpeedWindow(policy, 0);
    feed(window, 5_000, 14_500, 0.5, 0);
    expect(window.speed()).toBeLessThan(0.95);
    expect(window.isBehind()).toBe(false);
    feed(window, 15_000, 15_000, 0.5, 5);
    expect(window.isBehind()).toBe(true);
  });

  it('isBehind() is false while the pace stays at real time', () => {
    const window = new SpeedWindow(DEFAULT_SPEED_POLICY, 0);
    feed(window, 0, 60_000, 0.99, 0);
    expect(window.speed()).toBeCloseTo(0.99, 6);
    expect(window.isBehind()).toBe(false);
  });

  it('add() ignores samples going back in wall time or output time', () => {
    const window = new SpeedWindow(policy, 0);
    window.add(10, 5_000);
    window.add(11, 6_000);
    window.add(50, 5_500);
    window.add(9, 7_000);
    expect(window.speed()).toBeCloseTo(1, 6);
    expect(window.spanMs).toBe(1_000);
  });
});
