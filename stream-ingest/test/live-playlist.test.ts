import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partPlanOf } from '../src/ffmpeg-args';
import { FragmentedMp4Reader, MAX_BOX_BYTES } from '../src/fmp4-reader';
import { LivePlaylist, partUri, segmentUri } from '../src/live-playlist';
import { PartCutter, type CutSegment } from '../src/part-cutter';
import { makeTestInput } from './support/ffmpeg-fixtures';
import { encodeLadder, type RungOutput } from './support/fmp4-fixtures';
import { SeededRandom } from '../../e2e/support/impairment/random';

const run = promisify(execFile);
const SOURCE = { width: 1280, height: 720, fps: 30 };

let tmp: string;
let rungs: RungOutput[];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-live-playlist-'));
  const input = path.join(tmp, 'input.flv');
  await makeTestInput(input, { ...SOURCE, seconds: 9 });
  rungs = await encodeLadder(input, SOURCE);
}, 60_000);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** What an LL-HLS media playlist says, parsed back for assertions. */
interface ParsedLivePlaylist {
  partTarget: number;
  partHoldBack: number;
  canBlockReload: boolean;
  mediaSequence: number;
  segments: { uri: string; duration: number; parts: ParsedPart[]; map: string }[];
  openParts: ParsedPart[];
  preloadHint: string | undefined;
  reports: { uri: string; lastMsn: number; lastPart: number }[];
  ended: boolean;
}

interface ParsedPart {
  uri: string;
  duration: number;
  independent: boolean;
}

function attributes(line: string): Map<string, string> {
  const list = line.slice(line.indexOf(':') + 1);
  return new Map(
    [...list.matchAll(/([A-Z-]+)=("[^"]*"|[^,]*)/g)].map((m) => [m[1]!, m[2]!.replace(/"/g, '')]),
  );
}

function parseLive(text: string): ParsedLivePlaylist {
  const parsed: ParsedLivePlaylist = {
    partTarget: NaN,
    partHoldBack: NaN,
    canBlockReload: false,
    mediaSequence: NaN,
    segments: [],
    openParts: [],
    preloadHint: undefined,
    reports: [],
    ended: false,
  };
  let parts: ParsedPart[] = [];
  let duration = NaN;
  let map = '';
  for (const line of text.trim().split('\n')) {
    if (line.startsWith('#EXT-X-PART-INF:')) {
      parsed.partTarget = Number(attributes(line).get('PART-TARGET'));
    } else if (line.startsWith('#EXT-X-SERVER-CONTROL:')) {
      const control = attributes(line);
      parsed.canBlockReload = control.get('CAN-BLOCK-RELOAD') === 'YES';
      parsed.partHoldBack = Number(control.get('PART-HOLD-BACK'));
    } else if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) {
      parsed.mediaSequence = Number(line.split(':')[1]);
    } else if (line.startsWith('#EXT-X-MAP:')) {
      map = attributes(line).get('URI')!;
    } else if (line.startsWith('#EXT-X-PART:')) {
      const part = attributes(line);
      parts.push({
        uri: part.get('URI')!,
        duration: Number(part.get('DURATION')),
        independent: part.get('INDEPENDENT') === 'YES',
      });
    } else if (line.startsWith('#EXTINF:')) {
      duration = Number(line.slice(8, line.indexOf(',')));
    } else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) {
      parsed.preloadHint = attributes(line).get('URI');
    } else if (line.startsWith('#EXT-X-RENDITION-REPORT:')) {
      const report = attributes(line);
      parsed.reports.push({
        uri: report.get('URI')!,
        lastMsn: Number(report.get('LAST-MSN')),
        lastPart: Number(report.get('LAST-PART')),
      });
    } else if (line === '#EXT-X-ENDLIST') {
      parsed.ended = true;
    } else if (!line.startsWith('#')) {
      parsed.segments.push({ uri: line, duration, parts, map });
      parts = [];
    }
  }
  parsed.openParts = parts;
  return parsed;
}

// Cuts a rung's fragments into parts and segments and feeds a live playlist, as the ingest node
// does; stops after `fragments` fragments (all by default).
function feed(
  rung: RungOutput,
  playlist: LivePlaylist,
  fragments = rung.fragments.length,
): CutSegment[] {
  const cutter = new PartCutter(2, 0);
  const finished: CutSegment[] = [];
  playlist.setInit(0, rung.init);
  for (const fragment of rung.fragments.slice(0, fragments)) {
    const cut = cutter.add(fragment, new Date())!;
    if (cut.finished) {
      playlist.finishSegment(cut.finished);
      finished.push(cut.finished);
    }
    playlist.addPart(cut.part, false);
  }
  return finished;
}

function livePlaylistOf(rung: RungOutput): LivePlaylist {
  return new LivePlaylist({
    streamId: 's1',
    segmentSeconds: 2,
    partTargetSec: partPlanOf(rung.rendition).partTargetSec,
    windowSegments: 6,
  });
}

describe('the ladder as fragmented MP4', () => {
  it('each rung is an init segment, then fragments of 6 frames (the first also covers the audio priming), a key frame every 2 s on the same instants on every rung; init and fragments are all the bytes', () => {
    expect(rungs.map((rung) => rung.rendition.name)).toEqual(['720p30', '480p30']);
    for (const rung of rungs) {
      expect(rung.init.subarray(4, 8).toString('latin1')).toBe('ftyp');
      expect(Buffer.concat([rung.init, ...rung.fragments.map((f) => f.bytes)])).toEqual(rung.bytes);
      const [first, ...rest] = rung.fragments;
      // AAC's 1024 samples of priming delay the video by 21.3 ms, which its first sample covers.
      expect(first!.durationSec).toBeCloseTo(6 / 30 + 1024 / 48_000, 3);
      // The last fragment ends with the input.
      for (const fragment of rest.slice(0, -1)) expect(fragment.durationSec).toBeCloseTo(6 / 30, 6);
      // Each fragment starts where the one before ended.
      for (const [index, fragment] of rung.fragments.entries()) {
        if (index === 0) continue;
        const previous = rung.fragments[index - 1]!;
        expect(fragment.startSec).toBeCloseTo(previous.startSec + previous.durationSec, 6);
      }
    }
    const keyTimes = (rung: RungOutput) =>
      rung.fragments.filter((f) => f.independent).map((f) => Number(f.startSec.toFixed(3)));
    expect(keyTimes(rungs[0]!)).toEqual([0, 2.021, 4.021, 6.021, 8.021]);
    expect(keyTimes(rungs[1]!)).toEqual(keyTimes(rungs[0]!));
  });

  it('the init segment and a segment cut from the fragments play: ffprobe reads 2 s of 1280x720 video starting on a key frame', async () => {
    const rung = rungs[0]!;
    const segments = feed(rung, livePlaylistOf(rung));
    const file = path.join(tmp, 'segment-1.mp4');
    fs.writeFileSync(file, Buffer.concat([rung.init, ...segments[1]!.parts.map((p) => p.bytes)]));
    const { stdout } = await run('/usr/bin/ffprobe', [
      ...['-v', 'error', '-select_streams', 'v:0', '-count_frames'],
      ...['-show_entries', 'stream=width,height,nb_read_frames', '-of', 'json', file],
    ]);
    const stream = (JSON.parse(stdout) as { streams: Record<string, unknown>[] }).streams[0]!;
    expect(stream).toMatchObject({ width: 1280, height: 720, nb_read_frames: '60' });
  });
});

describe('LivePlaylist conformance (RFC 8216bis) on the real ladder output', () => {
  it('parts within PART-TARGET, INDEPENDENT exactly on key-frame parts, consistent numbering, a preload hint for the next part, consistent rendition reports, and each segment the concatenation of its parts', () => {
    const playlists = rungs.map(livePlaylistOf);
    // The live edge mid-segment: 3 complete segments and 2 parts of the 4th on each rung.
    const cut = rungs.map((rung, index) => feed(rung, playlists[index]!, 10 * 3 + 2));
    const texts = playlists.map((playlist, index) =>
      playlist.render(
        rungs
          .filter((_, other) => other !== index)
          .map((rung) => ({
            uri: `../${rung.rendition.name}/index.m3u8`,
            position: playlists[rungs.indexOf(rung)]!.position,
          })),
      ),
    );
    for (const [index, text] of texts.entries()) {
      const parsed = parseLive(text);
      const rung = rungs[index]!;
      expect(parsed.canBlockReload).toBe(true);
      expect(parsed.partTarget).toBe(0.234);
      // PART-HOLD-BACK at least twice PART-TARGET (three times, as recommended).
      expect(parsed.partHoldBack).toBeGreaterThanOrEqual(2 * parsed.partTarget);
      expect(parsed.mediaSequence).toBe(0);
      expect(parsed.segments.map((s) => s.uri)).toEqual([0, 1, 2].map((m) => segmentUri('s1', m)));
      expect(parsed.segments.every((s) => s.map === 's1-init-0.mp4')).toBe(true);
      const allParts = [...parsed.segments.flatMap((s) => s.parts), ...parsed.openParts];
      for (const part of allParts) expect(part.duration).toBeLessThanOrEqual(parsed.partTarget);
      // Numbering: segment m has parts m.0, m.1, ... and the open segment follows the last one.
      for (const [msn, segment] of parsed.segments.entries()) {
        expect(segment.parts.map((p) => p.uri)).toEqual(
          segment.parts.map((_, i) => partUri('s1', msn, i)),
        );
        expect(segment.duration).toBeCloseTo(
          segment.parts.reduce((sum, part) => sum + part.duration, 0),
          2,
        );
      }
      expect(parsed.openParts.map((p) => p.uri)).toEqual([
        partUri('s1', 3, 0),
        partUri('s1', 3, 1),
      ]);
      expect(parsed.preloadHint).toBe(partUri('s1', 3, 2));
      // INDEPENDENT on exactly the parts that start with a key frame: the first of each segment.
      const independent = rung.fragments.slice(0, 10 * 3 + 2).map((f) => f.independent);
      expect(allParts.map((p) => p.independent)).toEqual(independent);
      expect(allParts.filter((p) => p.independent).map((p) => p.uri)).toEqual(
        [0, 1, 2, 3].map((m) => partUri('s1', m, 0)),
      );
      // The other rung's report names its last part.
      const other = playlists[1 - index]!.position!;
      expect(parsed.reports).toEqual([
        {
          uri: `../${rungs[1 - index]!.rendition.name}/index.m3u8`,
          lastMsn: other.msn,
          lastPart: other.part,
        },
      ]);
      // A segment served whole is the concatenation of its parts, as served.
      for (const segment of cut[index]!) {
        const whole = Buffer.concat(playlists[index]!.media(segmentUri('s1', segment.msn))!);
        const parts = segment.parts.map(
          (part) => playlists[index]!.media(partUri('s1', part.msn, part.index))![0]!,
        );
        expect(whole).toEqual(Buffer.concat(parts));
      }
    }
  });

  it('blocking reload: reached() holds only once the playlist has the part, or the segment, or the stream ended', () => {
    const rung = rungs[0]!;
    const playlist = livePlaylistOf(rung);
    feed(rung, playlist, 10 + 2);
    expect(playlist.position).toEqual({ msn: 1, part: 1 });
    expect(playlist.reached(0)).toBe(true);
    expect(playlist.reached(1)).toBe(false);
    expect(playlist.reached(1, 1)).toBe(true);
    expect(playlist.reached(1, 2)).toBe(false);
    expect(playlist.reached(2, 0)).toBe(false);
    expect(playlist.media(partUri('s1', 1, 2))).toBeUndefined();
    expect(playlist.media(segmentUri('s1', 1))).toBeUndefined();
    playlist.end();
    expect(playlist.reached(5, 0)).toBe(true);
    const ended = parseLive(playlist.render([]));
    expect(ended.ended).toBe(true);
    expect(ended.preloadHint).toBeUndefined();
  });

  it('lists parts only near the live edge, and whole segments within the window', () => {
    const rung = rungs[0]!;
    const playlist = new LivePlaylist({
      streamId: 's1',
      segmentSeconds: 2,
      partTargetSec: 0.234,
      windowSegments: 3,
    });
    feed(rung, playlist);
    const parsed = parseLive(playlist.render([]));
    expect(parsed.mediaSequence).toBe(1);
    expect(parsed.segments.map((s) => s.uri)).toEqual([1, 2, 3].map((m) => segmentUri('s1', m)));
    // The segment that left the window is no longer served.
    expect(playlist.media(segmentUri('s1', 0))).toBeUndefined();
  });
});

describe('FragmentedMp4Reader at the end of the picture', () => {
  it('audio that outlasts the video comes in fragments without video, timed by their audio, on which no decoder starts', async () => {
    const input = path.join(tmp, 'longer-audio.flv');
    await run('/usr/bin/ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-y'],
      ...['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30:duration=2'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=3'],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '60', '-c:a', 'aac', '-f', 'flv', input],
    ]);
    const [rung] = await encodeLadder(input, { width: 640, height: 360, fps: 30 });
    // The fragments run to the end of the audio, a second past the last frame...
    const last = rung!.fragments.at(-1)!;
    expect(last.startSec + last.durationSec).toBeGreaterThan(2.9);
    expect(last.startSec + last.durationSec).toBeLessThan(3.1);
    // ...and those after the picture, timed by their audio, start no decoder.
    const afterPicture = rung!.fragments.filter((fragment) => fragment.startSec > 2.1);
    expect(afterPicture.length).toBeGreaterThan(0);
    expect(afterPicture.every((fragment) => !fragment.independent)).toBe(true);
  });
});

describe('FragmentedMp4Reader on hostile bytes', () => {
  it('mutated, truncated and oversized streams end in "error" or more fragments, never in an exception, and buffer no more than the box being read', () => {
    const original = rungs[1]!.bytes.subarray(0, 200_000);
    const random = new SeededRandom(99);
    let errors = 0;
    for (let round = 0; round < 300; round++) {
      const bytes = Buffer.from(original);
      // Half the flips hit the headers (init segment and first fragment), where structure is.
      for (let flips = 0; flips < 1 + Math.floor(random.next() * 8); flips++) {
        const span = random.next() < 0.5 ? 4096 : bytes.length;
        bytes[Math.floor(random.next() * span)] = Math.floor(random.next() * 256);
      }
      const reader = new FragmentedMp4Reader(() => undefined);
      reader.events.on('error', () => (errors += 1));
      let offset = 0;
      while (offset < bytes.length) {
        const size = 1 + Math.floor(random.next() * 5000);
        expect(() => reader.push(bytes.subarray(offset, offset + size))).not.toThrow();
        offset += size;
      }
    }
    expect(errors).toBeGreaterThan(0);

    // A box that claims more than the limit is refused at its header, not buffered.
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(MAX_BOX_BYTES + 1, 0);
    huge.write('ftyp', 4, 'latin1');
    const reader = new FragmentedMp4Reader(() => undefined);
    const seen: string[] = [];
    reader.events.on('error', (error) => seen.push(error.message));
    reader.push(huge);
    expect(seen).toEqual([`not a fragmented MP4 stream: ftyp box of ${MAX_BOX_BYTES + 1} bytes`]);
  });
});
