import { TypedEmitter } from '@hearth/server-common';

/** One fragment of a fragmented MP4 stream: a `moof` and its `mdat`, with what came before. */
export interface Mp4Fragment {
  /** The fragment's bytes, ready to serve as an LL-HLS part. */
  readonly bytes: Buffer;
  /** Decode time of its first video sample (audio, without video), in seconds. */
  readonly startSec: number;
  /** Duration of its video samples (audio samples, without video), in seconds. */
  readonly durationSec: number;
  /** True when its first video sample is a sync sample (a key frame): it decodes on its own. */
  readonly independent: boolean;
}

/** Events of a FragmentedMp4Reader. */
export type FragmentedMp4ReaderEvents = {
  /** The initialization segment (`ftyp` and `moov`), once, before any fragment. */
  init: [Buffer];
  /** A complete fragment. */
  fragment: [Mp4Fragment];
  /** The stream is not fragmented MP4 as expected; nothing more is read. */
  error: [Error];
};

/** Largest box accepted: a fragment of a third of a second at 50 Mbit/s is about 2 MB. */
export const MAX_BOX_BYTES = 32 * 1024 * 1024;

// Boxes a fragment may carry before its moof: segment type and producer reference time.
const FRAGMENT_PREFIX_BOXES = new Set(['styp', 'prft', 'sidx', 'emsg']);
// tfhd flags (ISO/IEC 14496-12 8.8.7).
const TFHD_BASE_DATA_OFFSET = 0x1;
const TFHD_SAMPLE_DESCRIPTION_INDEX = 0x2;
const TFHD_DEFAULT_DURATION = 0x8;
const TFHD_DEFAULT_SIZE = 0x10;
const TFHD_DEFAULT_FLAGS = 0x20;
// trun flags (8.8.8).
const TRUN_DATA_OFFSET = 0x1;
const TRUN_FIRST_SAMPLE_FLAGS = 0x4;
const TRUN_SAMPLE_DURATION = 0x100;
const TRUN_SAMPLE_SIZE = 0x200;
const TRUN_SAMPLE_FLAGS = 0x400;
const TRUN_COMPOSITION_OFFSET = 0x800;
// sample_is_non_sync_sample in sample flags (8.8.3.1).
const NON_SYNC_SAMPLE = 0x10000;

interface TrackInfo {
  timescale: number;
  handler: string;
  defaultDuration: number;
  defaultFlags: number;
}

interface Box {
  readonly type: string;
  /** Offset of the box's content (after its header) in the buffer it was read from. */
  readonly start: number;
  /** Offset just past the box. */
  readonly end: number;
}

class Mp4FormatError extends Error {}

// The boxes directly inside `buffer[start, end)`.
function childBoxes(buffer: Buffer, start: number, end: number): Box[] {
  const boxes: Box[] = [];
  let offset = start;
  while (offset + 8 <= end) {
    let size = buffer.readUInt32BE(offset);
    const type = buffer.toString('latin1', offset + 4, offset + 8);
    let header = 8;
    if (size === 1) {
      if (offset + 16 > end) throw new Mp4FormatError(`truncated ${type} box`);
      size = Number(buffer.readBigUInt64BE(offset + 8));
      header = 16;
    }
    if (size < header || offset + size > end) throw new Mp4FormatError(`bad size of ${type} box`);
    boxes.push({ type, start: offset + header, end: offset + size });
    offset += size;
  }
  if (offset !== end) throw new Mp4FormatError('trailing bytes inside a box');
  return boxes;
}

function child(buffer: Buffer, parent: Box, type: string): Box | undefined {
  return childBoxes(buffer, parent.start, parent.end).find((box) => box.type === type);
}

function need(buffer: Buffer, box: Box, bytes: number): void {
  if (box.end - box.start < bytes) throw new Mp4FormatError(`${box.type} box too short`);
  if (box.start + bytes > buffer.length) throw new Mp4FormatError(`${box.type} box truncated`);
}

// Tracks of a moov: id, timescale, handler, and the defaults of its trex.
function readTracks(buffer: Buffer, moov: Box): Map<number, TrackInfo> {
  const tracks = new Map<number, TrackInfo>();
  const inMoov = childBoxes(buffer, moov.start, moov.end);
  for (const trak of inMoov.filter((box) => box.type === 'trak')) {
    const tkhd = child(buffer, trak, 'tkhd');
    const mdia = child(buffer, trak, 'mdia');
    const mdhd = mdia && child(buffer, mdia, 'mdhd');
    const hdlr = mdia && child(buffer, mdia, 'hdlr');
    if (!tkhd || !mdhd || !hdlr) throw new Mp4FormatError('trak without tkhd, mdhd or hdlr');
    need(buffer, tkhd, 24);
    const tkhdVersion = buffer[tkhd.start]!;
    const trackId = buffer.readUInt32BE(tkhd.start + (tkhdVersion === 1 ? 20 : 12));
    need(buffer, mdhd, 24);
    const mdhdVersion = buffer[mdhd.start]!;
    const timescale = buffer.readUInt32BE(mdhd.start + (mdhdVersion === 1 ? 20 : 12));
    need(buffer, hdlr, 12);
    const handler = buffer.toString('latin1', hdlr.start + 8, hdlr.start + 12);
    if (timescale === 0) throw new Mp4FormatError('track with a timescale of 0');
    tracks.set(trackId, { timescale, handler, defaultDuration: 0, defaultFlags: 0 });
  }
  const mvex = inMoov.find((box) => box.type === 'mvex');
  if (!mvex) throw new Mp4FormatError('moov without mvex: the stream is not fragmented');
  for (const trex of childBoxes(buffer, mvex.start, mvex.end)) {
    if (trex.type !== 'trex') continue;
    need(buffer, trex, 24);
    const track = tracks.get(buffer.readUInt32BE(trex.start + 4));
    if (!track) continue;
    track.defaultDuration = buffer.readUInt32BE(trex.start + 12);
    track.defaultFlags = buffer.readUInt32BE(trex.start + 20);
  }
  return tracks;
}

/** What a traf says of its track: id, start, summed duration and the first sample's flags. */
interface TrackRun {
  trackId: number;
  baseDecodeTime: number;
  duration: number;
  firstSampleFlags: number;
}

function readTraf(buffer: Buffer, traf: Box, tracks: Map<number, TrackInfo>): TrackRun {
  const boxes = childBoxes(buffer, traf.start, traf.end);
  const tfhd = boxes.find((box) => box.type === 'tfhd');
  if (!tfhd) throw new Mp4FormatError('traf without tfhd');
  need(buffer, tfhd, 8);
  const tfhdFlags = buffer.readUInt32BE(tfhd.start) & 0xffffff;
  const trackId = buffer.readUInt32BE(tfhd.start + 4);
  const track = tracks.get(trackId);
  if (!track) throw new Mp4FormatError(`traf of unknown track ${trackId}`);
  let offset = tfhd.start + 8;
  if (tfhdFlags & TFHD_BASE_DATA_OFFSET) offset += 8;
  if (tfhdFlags & TFHD_SAMPLE_DESCRIPTION_INDEX) offset += 4;
  let defaultDuration = track.defaultDuration;
  let defaultFlags = track.defaultFlags;
  if (tfhdFlags & TFHD_DEFAULT_DURATION) {
    need(buffer, tfhd, offset + 4 - tfhd.start);
    defaultDuration = buffer.readUInt32BE(offset);
    offset += 4;
  }
  if (tfhdFlags & TFHD_DEFAULT_SIZE) offset += 4;
  if (tfhdFlags & TFHD_DEFAULT_FLAGS) {
    need(buffer, tfhd, offset + 4 - tfhd.start);
    defaultFlags = buffer.readUInt32BE(offset);
  }
  const tfdt = boxes.find((box) => box.type === 'tfdt');
  if (!tfdt) throw new Mp4FormatError('traf without tfdt');
  need(buffer, tfdt, 8);
  const baseDecodeTime =
    buffer[tfdt.start] === 1
      ? (need(buffer, tfdt, 12), Number(buffer.readBigUInt64BE(tfdt.start + 4)))
      : buffer.readUInt32BE(tfdt.start + 4);
  let duration = 0;
  let firstSampleFlags: number | undefined;
  for (const trun of boxes.filter((box) => box.type === 'trun')) {
    need(buffer, trun, 8);
    const flags = buffer.readUInt32BE(trun.start) & 0xffffff;
    const count = buffer.readUInt32BE(trun.start + 4);
    let at = trun.start + 8;
    if (flags & TRUN_DATA_OFFSET) at += 4;
    let runFirstFlags: number | undefined;
    if (flags & TRUN_FIRST_SAMPLE_FLAGS) {
      need(buffer, trun, at + 4 - trun.start);
      runFirstFlags = buffer.readUInt32BE(at);
      at += 4;
    }
    const fields = [
      TRUN_SAMPLE_DURATION,
      TRUN_SAMPLE_SIZE,
      TRUN_SAMPLE_FLAGS,
      TRUN_COMPOSITION_OFFSET,
    ].filter((field) => flags & field).length;
    // The sample count is bounded by the box, which is bounded by MAX_BOX_BYTES.
    need(buffer, trun, at - trun.start + count * fields * 4);
    for (let sample = 0; sample < count; sample++) {
      let sampleDuration = defaultDuration;
      let sampleFlags = sample === 0 && runFirstFlags !== undefined ? runFirstFlags : defaultFlags;
      if (flags & TRUN_SAMPLE_DURATION) {
        sampleDuration = buffer.readUInt32BE(at);
        at += 4;
      }
      if (flags & TRUN_SAMPLE_SIZE) at += 4;
      if (flags & TRUN_SAMPLE_FLAGS) {
        const explicit = buffer.readUInt32BE(at);
        if (!(sample === 0 && runFirstFlags !== undefined)) sampleFlags = explicit;
        at += 4;
      }
      if (flags & TRUN_COMPOSITION_OFFSET) at += 4;
      duration += sampleDuration;
      firstSampleFlags ??= sampleFlags;
    }
  }
  return { trackId, baseDecodeTime, duration, firstSampleFlags: firstSampleFlags ?? defaultFlags };
}

/**
 * Reads a fragmented MP4 stream as ffmpeg writes it to a pipe (`-movflags frag_keyframe+
 * empty_moov+default_base_moof`): first the initialization segment, then one fragment after the
 * other, each timed from its video track (or its audio, when it has no video). Bytes are buffered only up to the box being read, and
 * a box over MAX_BOX_BYTES or a malformed one stops the reader with `error`.
 */
export class FragmentedMp4Reader {
  /** The init segment, each fragment, and a format error. */
  readonly events: TypedEmitter<FragmentedMp4ReaderEvents>;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #init: Buffer[] = [];
  #fragment: Buffer[] = [];
  #tracks: Map<number, TrackInfo> | undefined;
  #videoTrackId: number | undefined;
  #failed = false;

  /** `onListenerError` hears of exceptions thrown by event listeners. */
  constructor(onListenerError: (error: unknown, event: string) => void) {
    this.events = new TypedEmitter(onListenerError);
  }

  /** Reads more of the stream. */
  push(chunk: Buffer): void {
    if (this.#failed) return;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    try {
      this.#drain();
    } catch (error) {
      this.#failed = true;
      this.#pending = [];
      this.#pendingBytes = 0;
      const reason = error instanceof Error ? error.message : String(error);
      this.events.safeEmit('error', new Error(`not a fragmented MP4 stream: ${reason}`));
    }
  }

  #drain(): void {
    for (;;) {
      if (this.#pendingBytes < 8) return;
      const head = this.#peek(16);
      let size = head.readUInt32BE(0);
      if (size === 1) {
        if (head.length < 16) return;
        size = Number(head.readBigUInt64BE(8));
      }
      const type = head.toString('latin1', 4, 8);
      if (size < 8) throw new Mp4FormatError(`box ${JSON.stringify(type)} of size ${size}`);
      if (size > MAX_BOX_BYTES) throw new Mp4FormatError(`${type} box of ${size} bytes`);
      if (this.#pendingBytes < size) return;
      this.#onBox(type, this.#take(size));
    }
  }

  #onBox(type: string, box: Buffer): void {
    if (!this.#tracks) {
      if (type !== 'ftyp' && type !== 'moov' && type !== 'free') {
        throw new Mp4FormatError(`${type} box before the moov`);
      }
      this.#init.push(box);
      if (type === 'moov') this.#onMoov(box);
      return;
    }
    if (FRAGMENT_PREFIX_BOXES.has(type) || type === 'moof') {
      if (type === 'moof' && this.#fragment.some((part) => isType(part, 'moof'))) {
        throw new Mp4FormatError('moof without its mdat');
      }
      this.#fragment.push(box);
    } else if (type === 'mdat') {
      if (!this.#fragment.some((part) => isType(part, 'moof'))) {
        throw new Mp4FormatError('mdat without a moof');
      }
      this.#fragment.push(box);
      this.#onFragment(Buffer.concat(this.#fragment));
      this.#fragment = [];
    } else if (type !== 'free' && type !== 'mfra') {
      throw new Mp4FormatError(`unexpected ${type} box between fragments`);
    }
  }

  #onMoov(moov: Buffer): void {
    const tracks = readTracks(moov, { type: 'moov', start: 8, end: moov.length });
    const video = [...tracks].find(([, track]) => track.handler === 'vide');
    if (!video) throw new Mp4FormatError('no video track');
    this.#tracks = tracks;
    this.#videoTrackId = video[0];
    const init = Buffer.concat(this.#init);
    this.#init = [];
    this.events.safeEmit('init', init);
  }

  #onFragment(bytes: Buffer): void {
    const boxes = childBoxes(bytes, 0, bytes.length);
    const moof = boxes.find((box) => box.type === 'moof')!;
    const tracks = this.#tracks!;
    const runs = childBoxes(bytes, moof.start, moof.end)
      .filter((box) => box.type === 'traf')
      .map((traf) => readTraf(bytes, traf, tracks));
    const video = runs.find((run) => run.trackId === this.#videoTrackId);
    // Without video (the audio after the last frame, or while a share's picture stands still),
    // the fragment is timed by its audio, and no decoder can start on it.
    const timing = video ?? runs[0];
    if (!timing) throw new Mp4FormatError('fragment without a track');
    const { timescale } = tracks.get(timing.trackId)!;
    this.events.safeEmit('fragment', {
      bytes,
      startSec: timing.baseDecodeTime / timescale,
      durationSec: timing.duration / timescale,
      independent: video !== undefined && (video.firstSampleFlags & NON_SYNC_SAMPLE) === 0,
    });
  }

  // The first `bytes` pending bytes (fewer when fewer are pending), without consuming them.
  #peek(bytes: number): Buffer {
    const first = this.#pending[0]!;
    if (first.length >= bytes || this.#pending.length === 1) return first.subarray(0, bytes);
    return Buffer.concat(this.#pending).subarray(0, bytes);
  }

  #take(bytes: number): Buffer {
    const all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    const taken = Buffer.from(all.subarray(0, bytes));
    const rest = all.subarray(bytes);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return taken;
  }
}

function isType(box: Buffer, type: string): boolean {
  return box.toString('latin1', 4, 8) === type;
}
