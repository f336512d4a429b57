import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SegmentReady } from '../src/hls-types';
import {
  FfmpegStartError,
  InvalidStateError,
  redactStreamUrls,
  Transcoder,
  type AdaptedInfo,
  type FlvFeed,
  type InitReady,
  type PartReady,
  type TranscoderOptions,
} from '../src/transcoder';
import {
  isProcessAlive,
  makeTestInput,
  memoryLogger,
  probeSegment,
  waitFor,
  withInit,
} from './support/ffmpeg-fixtures';

const SOURCE = { width: 1280, height: 720, fps: 30 };

let tmp: string;
let input: string;
const transcoders: Transcoder[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-transcoder-'));
  input = path.join(tmp, 'input.flv');
  // Long enough that no test reaches the end of the file: each stops its transcoder first.
  await makeTestInput(input, { ...SOURCE, seconds: 40 });
});

afterEach(async () => {
  await Promise.all(transcoders.splice(0).map((t) => t.stop()));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function makeTranscoder(name: string, overrides: Partial<TranscoderOptions> = {}) {
  const { logger, records } = memoryLogger();
  const transcoder = new Transcoder({
    input,
    workDir: path.join(tmp, name),
    source: SOURCE,
    segmentSeconds: 2,
    passthrough: false,
    logger,
    ...overrides,
  });
  transcoders.push(transcoder);
  const segments: SegmentReady[] = [];
  const parts: PartReady[] = [];
  const inits: InitReady[] = [];
  const events: string[] = [];
  transcoder.events.on('segment', (segment) => segments.push(segment));
  transcoder.events.on('part', (part) => parts.push(part));
  transcoder.events.on('init', (init) => inits.push(init));
  transcoder.events.on('restarted', (attempt) => events.push(`restarted ${attempt}`));
  transcoder.events.on('ended', () => events.push('ended'));
  transcoder.events.on('failed', (error) => events.push(`failed ${error.name}`));
  return { transcoder, segments, parts, inits, events, records };
}

function byRendition(segments: SegmentReady[], rendition: string, run?: number): SegmentReady[] {
  return segments.filter((s) => s.rendition === rendition && (run === undefined || s.run === run));
}

// A segment as a player reads it: its run's init segment, then the segment.
function playable(segment: SegmentReady, inits: InitReady[]): string {
  const init = inits.find((i) => i.rendition === segment.rendition && i.run === segment.run)!;
  return withInit(init.bytes, segment.localPath);
}

describe('Transcoder with real ffmpeg', () => {
  it('start() on a 720p30 input emits an init segment, then parts of at most 6 frames and ~2 s segments made of them, per rendition; stop() ends with "ended" and no ffmpeg left', async () => {
    const { transcoder, segments, parts, inits, events, records } = makeTranscoder('basic');
    await transcoder.start();
    const pid = transcoder.pid!;
    expect(isProcessAlive(pid)).toBe(true);
    expect(transcoder.renditions.map((r) => r.name)).toEqual(['720p30', '480p30']);
    expect(transcoder.preset).toBe('veryfast');

    await waitFor('three segments per rendition', 20_000, () =>
      byRendition(segments, '720p30').length >= 3 && byRendition(segments, '480p30').length >= 3
        ? true
        : undefined,
    );
    await transcoder.stop();

    expect(events).toEqual(['ended']);
    expect(transcoder.state).toBe('ended');
    expect(transcoder.pid).toBeUndefined();
    expect(isProcessAlive(pid)).toBe(false);
    expect(inits.map((i) => [i.rendition, i.run])).toEqual([
      ['720p30', 0],
      ['480p30', 0],
    ]);

    for (const rendition of ['720p30', '480p30']) {
      const own = byRendition(segments, rendition);
      // The last one may be the short segment ffmpeg closes on `q`.
      const full = own.slice(0, -1);
      expect(full.length).toBeGreaterThanOrEqual(3);
      expect(own.map((s) => s.sequence)).toEqual(own.map((_, i) => i));
      const ownParts = parts.filter((p) => p.rendition === rendition).map((p) => p.part);
      for (const [i, segment] of own.entries()) {
        expect(segment.localPath).toBe(path.join(tmp, 'basic', 'run-0', rendition, `${i}.m4s`));
        expect(segment.discontinuity).toBe(false);
        if (i < full.length) expect(segment.durationSec).toBeCloseTo(2, 1);
        // A segment is its parts, in order: the first starts with the key frame, the others do
        // not, and none is longer than 6 frames (the first of the run also covers AAC priming).
        const mine = ownParts.filter((p) => p.msn === segment.sequence);
        expect(mine.map((p) => p.index)).toEqual(mine.map((_, index) => index));
        expect(mine.map((p) => p.independent)).toEqual(mine.map((_, index) => index === 0));
        for (const part of mine) {
          const priming = i === 0 && part.index === 0 ? 1024 / 48_000 : 0;
          // The priming comes out at 328 ticks of 1/15360 s: 21.35 ms.
          expect(part.durationSec).toBeLessThanOrEqual(6 / 30 + priming + 1e-3);
        }
        expect(fs.readFileSync(segment.localPath)).toEqual(Buffer.concat(mine.map((p) => p.bytes)));
        if (i < full.length) expect(mine).toHaveLength(10);
        if (i > 0) {
          const previous = own[i - 1]!;
          // Dated by the wall clock as fragments arrive: within a part of the media timeline.
          expect(
            segment.programDateTime.getTime() - previous.programDateTime.getTime(),
          ).toBeCloseTo(previous.durationSec * 1000, -3);
        }
      }
      // The date is the wall clock of the live stream, not a media timestamp.
      expect(Math.abs(own[0]!.programDateTime.getTime() - Date.now())).toBeLessThan(60_000);
    }

    const probes: Record<string, Awaited<ReturnType<typeof probeSegment>>[]> = {};
    for (const rendition of ['720p30', '480p30']) {
      probes[rendition] = await Promise.all(
        byRendition(segments, rendition)
          .slice(0, 3)
          .map((s) => probeSegment(playable(s, inits))),
      );
    }
    expect(probes['720p30']!.map((p) => [p.width, p.height])).toEqual([
      [1280, 720],
      [1280, 720],
      [1280, 720],
    ]);
    expect(probes['480p30']!.map((p) => [p.width, p.height])).toEqual([
      [854, 480],
      [854, 480],
      [854, 480],
    ]);
    const keyframeTimes = (rendition: string) =>
      probes[rendition]!.map((p) => p.frames.filter((f) => f.keyFrame).map((f) => f.ptsTime));
    // One keyframe per segment, first frame of the segment, at the same time on both rungs.
    expect(keyframeTimes('720p30').map((times) => times.length)).toEqual([1, 1, 1]);
    expect(probes['720p30']!.every((p) => p.frames[0]!.keyFrame)).toBe(true);
    expect(keyframeTimes('480p30')).toEqual(keyframeTimes('720p30'));
    const starts = keyframeTimes('720p30').map((times) => times[0]!);
    // The first segment also holds AAC's priming delay (21 ms).
    expect(starts[1]! - starts[0]!).toBeCloseTo(2, 1);
    expect(starts[2]! - starts[1]!).toBeCloseTo(2, 2);

    // stderr reached the logger line by line: the banner at debug, progress at trace.
    expect(records.some((r) => r.level === 20 && r.msg.startsWith('[info] ffmpeg version'))).toBe(
      true,
    );
    expect(records.some((r) => r.level === 10 && r.msg.includes('speed='))).toBe(true);
  }, 25_000);

  it('a SIGKILLed ffmpeg is restarted: "restarted" 1, the next segment of each rendition has discontinuity, segments keep coming', async () => {
    // One-second segments keep the test short; the first test covers two-second ones.
    const { transcoder, segments, events } = makeTranscoder('killed', {
      segmentSeconds: 1,
      restartPolicy: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 1_000, stableMs: 60_000 },
    });
    await transcoder.start();
    await waitFor('a first segment per rendition', 15_000, () =>
      byRendition(segments, '720p30').length >= 1 && byRendition(segments, '480p30').length >= 1
        ? true
        : undefined,
    );
    const firstPid = transcoder.pid!;
    process.kill(firstPid, 'SIGKILL');

    await waitFor('"restarted"', 10_000, () => (events.includes('restarted 1') ? true : undefined));
    const secondPid = transcoder.pid!;
    expect(secondPid).not.toBe(firstPid);
    expect(isProcessAlive(firstPid)).toBe(false);

    await waitFor('two segments per rendition from the second run', 15_000, () =>
      byRendition(segments, '720p30', 1).length >= 2 &&
      byRendition(segments, '480p30', 1).length >= 2
        ? true
        : undefined,
    );
    await transcoder.stop();

    expect(events).toEqual(['restarted 1', 'ended']);
    expect(isProcessAlive(secondPid)).toBe(false);
    for (const rendition of ['720p30', '480p30']) {
      const before = byRendition(segments, rendition, 0);
      const after = byRendition(segments, rendition, 1);
      expect(before.map((s) => s.discontinuity).every((d) => !d)).toBe(true);
      expect(after.map((s) => s.discontinuity)).toEqual([true, ...after.slice(1).map(() => false)]);
      // Emitted in order: every run-0 segment before any run-1 segment.
      const own = byRendition(segments, rendition);
      expect(own).toEqual([...before, ...after]);
      expect(after[0]!.programDateTime.getTime()).toBeGreaterThan(
        before[before.length - 1]!.programDateTime.getTime(),
      );
    }
  }, 25_000);

  it('an ffmpeg slower than the speed policy is restarted with a faster preset: "adapted", then a discontinuity', async () => {
    // Read at native rate, ffmpeg can never reach 1.5x, so the policy must trigger.
    const { transcoder, segments, events } = makeTranscoder('adapt', {
      segmentSeconds: 1,
      speedPolicy: { minSpeed: 1.5, windowMs: 2_000, warmupMs: 2_000 },
    });
    const adapted: AdaptedInfo[] = [];
    const speeds: number[] = [];
    transcoder.events.on('adapted', (info) => adapted.push(info));
    transcoder.events.on('speed', (speed) => speeds.push(speed));
    await transcoder.start();

    const first = await waitFor('"adapted"', 15_000, () => adapted[0]);
    expect(first.preset).toBe('superfast');
    expect(first.renditions.map((r) => r.name)).toEqual(['720p30', '480p30']);
    const measured = /^speed (\d\.\d\d)x below 1\.5x: preset veryfast -> superfast$/.exec(
      first.reason,
    );
    expect(measured).not.toBeNull();
    expect(Number(measured![1])).toBeLessThan(1.5);
    expect(transcoder.preset).toBe('superfast');
    // Speed events came before the decision, with positive figures.
    expect(speeds.length).toBeGreaterThan(0);
    expect(speeds.every((speed) => speed > 0 && Number.isFinite(speed))).toBe(true);

    const restarted = await waitFor(
      'a segment of the second run',
      15_000,
      () => byRendition(segments, '480p30', 1)[0],
    );
    expect(restarted.discontinuity).toBe(true);
    await transcoder.stop();
    // An adaptation is not a death: no "restarted" event.
    expect(events).toEqual(['ended']);
  }, 25_000);

  it('stop() during the restart backoff emits "ended" and starts no new ffmpeg', async () => {
    const { transcoder, events, records } = makeTranscoder('stop-in-backoff', {
      restartPolicy: { maxAttempts: 3, baseDelayMs: 3_000, maxDelayMs: 3_000, stableMs: 60_000 },
    });
    await transcoder.start();
    const pid = transcoder.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor('the restart to be scheduled', 5_000, () =>
      records.some((r) => r.msg === 'restarting ffmpeg') ? true : undefined,
    );
    expect(transcoder.pid).toBeUndefined();
    await transcoder.stop();
    expect(events).toEqual(['ended']);
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(transcoder.pid).toBeUndefined();
    expect(records.filter((r) => r.msg === 'starting ffmpeg')).toHaveLength(1);
  }, 25_000);

  it('start() with a missing ffmpeg binary rejects with FfmpegStartError and emits "failed"', async () => {
    const { transcoder, events } = makeTranscoder('no-binary', {
      ffmpegPath: '/nonexistent/ffmpeg',
    });
    const error = await transcoder.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegStartError);
    expect((error as Error).message).toMatch(/^ffmpeg did not start: .*ENOENT/);
    expect(events).toEqual(['failed FfmpegStartError']);
    expect(transcoder.state).toBe('failed');
    expect(transcoder.pid).toBeUndefined();
    await transcoder.stop();
    expect(events).toEqual(['failed FfmpegStartError']);
  });

  it("start() with a missing input rejects with FfmpegStartError carrying ffmpeg's error", async () => {
    const { transcoder, events, records } = makeTranscoder('no-input', {
      input: path.join(tmp, 'missing.flv'),
    });
    const error = await transcoder.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegStartError);
    expect((error as Error).message).toContain('No such file or directory');
    expect(events).toEqual(['failed FfmpegStartError']);
    // ffmpeg's own error line went to the logger at warn or above.
    expect(records.some((r) => r.level >= 40 && r.msg.includes('No such file or directory'))).toBe(
      true,
    );
  });
});

describe('Transcoder lifecycle', () => {
  it('stop() before start() emits "ended" once and start() afterwards rejects with InvalidStateError', async () => {
    const { transcoder, events } = makeTranscoder('never-started');
    await Promise.all([transcoder.stop(), transcoder.stop()]);
    expect(events).toEqual(['ended']);
    await expect(transcoder.start()).rejects.toThrow(InvalidStateError);
  });

  it('start() twice rejects the second call with InvalidStateError', async () => {
    const { transcoder } = makeTranscoder('twice');
    const first = transcoder.start();
    await expect(transcoder.start()).rejects.toThrow(
      new InvalidStateError('start() called while running'),
    );
    await first;
  });

  it('ffmpeg dies with the process that runs the transcoder, even when that one is SIGKILLed', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(import.meta.dirname, 'support/transcoder-child.ts'),
        input,
        tmp,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
      child.once('exit', (code) => reject(new Error(`the child exited first (${code})`)));
    });
    expect(isProcessAlive(pid)).toBe(true);
    child.kill('SIGKILL');
    await waitFor('ffmpeg to die', 5000, () => (isProcessAlive(pid) ? undefined : true));
  }, 30_000);
});

describe('Transcoder on a live FLV feed', () => {
  it('an ffmpeg that stops reading its feed is killed and restarted instead of buffering without bound', async () => {
    // The first 4 MB of the test file: about 12 s of content, enough for ffmpeg to be encoding.
    const start = fs.readFileSync(input).subarray(0, 4 * 1024 * 1024);
    const sinks: ((chunk: Buffer) => void)[] = [];
    const feed: FlvFeed = {
      subscribe(sink) {
        sinks.push(sink);
        sink(start);
        return () => undefined;
      },
    };
    const { transcoder, events, records } = makeTranscoder('stalled', {
      input: feed,
      restartPolicy: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 100, stableMs: 60_000 },
    });
    await transcoder.start();
    const stalled = transcoder.pid!;
    // A wedged ffmpeg: it no longer reads its stdin, and the feed keeps coming.
    process.kill(stalled, 'SIGSTOP');
    for (let megabytes = 0; megabytes < 20 && transcoder.pid === stalled; megabytes++) {
      sinks[0]!(Buffer.alloc(1024 * 1024, 0x47));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await waitFor('a restarted ffmpeg', 20_000, () =>
      events.includes('restarted 1') ? true : undefined,
    );
    expect(sinks).toHaveLength(2);
    expect(transcoder.pid).not.toBe(stalled);
    expect(
      records.some((record) => record.msg === 'ffmpeg stopped reading its input; killing it'),
    ).toBe(true);
  });
});

describe('redactStreamUrls()', () => {
  it.each([
    [
      'rtmp://127.0.0.1:1935/live/sk_abc_def?token=123: Input/output error',
      'rtmp://127.0.0.1:1935/live/<redacted>: Input/output error',
    ],
    ['-i rtmps://host/app/key', '-i rtmps://host/app/<redacted>'],
    ['/tmp/input.flv: No such file', '/tmp/input.flv: No such file'],
  ])('redactStreamUrls(%j) hides the stream name and query', (text, expected) => {
    expect(redactStreamUrls(text)).toBe(expected);
  });
});
