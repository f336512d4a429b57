import { CUT_AT_SHARE_OF_TARGET, type CutSegment, type LivePart } from './part-cutter';

/** Name of each media playlist inside its rendition folder. */
export const PLAYLIST_NAME = 'index.m3u8';

/** Settings of one rendition's live (LL-HLS) playlist. */
export interface LivePlaylistOptions {
  /** Id of the stream, the start of every media name. */
  readonly streamId: string;
  /** Target segment duration, in seconds. */
  readonly segmentSeconds: number;
  /** Longest part, in seconds (EXT-X-PART-INF PART-TARGET). */
  readonly partTargetSec: number;
  /** Complete segments listed. */
  readonly windowSegments: number;
}

/** Where a rendition's playlist ends: its last segment and part, as rendition reports give it. */
export interface LivePosition {
  /** Media sequence number of the last segment with a part. */
  readonly msn: number;
  /** Index of that segment's last part. */
  readonly part: number;
}

/** A rendition report line: another rendition's playlist and where it ends. */
export interface RenditionReport {
  /** URI of its playlist, relative to this one. */
  readonly uri: string;
  /** Where it ends; undefined before its first part. */
  readonly position: LivePosition | undefined;
}

interface ListedSegment {
  readonly msn: number;
  readonly parts: readonly LivePart[];
  readonly durationSec: number;
  readonly programDateTime: Date;
  readonly discontinuity: boolean;
  readonly initUri: string;
}

// Protocol version 6: EXT-X-MAP in a playlist of media segments (RFC 8216bis section 8).
const LIVE_HLS_VERSION = 6;
// Parts are listed for segments this many target durations from the live edge, as the spec
// recommends; older segments are listed whole.
const PART_LISTING_TARGET_DURATIONS = 3;
// PART-HOLD-BACK is three part targets, the spec's recommendation (at least two are required).
const PART_HOLD_BACK_PARTS = 3;

/** Name of a segment of a stream. */
export function segmentUri(streamId: string, msn: number): string {
  return `${streamId}-${msn}.m4s`;
}

/** Name of a part of a segment of a stream. */
export function partUri(streamId: string, msn: number, index: number): string {
  return `${streamId}-${msn}.${index}.m4s`;
}

/** Name of the initialization segment of one ffmpeg run of a stream. */
export function initUri(streamId: string, run: number): string {
  return `${streamId}-init-${run}.mp4`;
}

function seconds(value: number): string {
  return value.toFixed(3);
}

/**
 * One rendition's live playlist as the origin serves it: the last complete segments, the parts
 * of the newest ones and of the segment being cut, and a preload hint for the next part. It
 * keeps the bytes of every part it lists, so the origin serves parts and segments from memory.
 */
export class LivePlaylist {
  readonly #options: LivePlaylistOptions;
  readonly #segments: ListedSegment[] = [];
  #open: LivePart[] = [];
  #openMsn = 0;
  #openDiscontinuity = false;
  #initUri: string | undefined;
  readonly #inits = new Map<string, Buffer>();
  #discontinuitySequence = 0;
  #targetDuration: number;
  #ended = false;
  // Bumped on every change; the origin wakes blocked requests on it.
  #version = 0;

  constructor(options: LivePlaylistOptions) {
    if (!(options.partTargetSec > 0) || !(options.segmentSeconds >= options.partTargetSec)) {
      throw new RangeError('need 0 < partTargetSec <= segmentSeconds');
    }
    if (!Number.isInteger(options.windowSegments) || options.windowSegments < 1) {
      throw new RangeError('windowSegments must be a positive integer');
    }
    this.#options = options;
    this.#targetDuration = Math.ceil(options.segmentSeconds);
  }

  /** Changes with every part, segment, init or end: a cheap test for "something new". */
  get version(): number {
    return this.#version;
  }

  /** True once the stream ended: no part will be added. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Where the playlist ends, undefined before its first part. */
  get position(): LivePosition | undefined {
    if (this.#open.length > 0) return { msn: this.#openMsn, part: this.#open.length - 1 };
    const last = this.#segments.at(-1);
    return last && { msn: last.msn, part: last.parts.length - 1 };
  }

  /** Media that follows uses this init segment (a new ffmpeg run); it starts a new timeline. */
  setInit(run: number, bytes: Buffer): void {
    const uri = initUri(this.#options.streamId, run);
    this.#inits.set(uri, bytes);
    this.#initUri = uri;
    this.#bump();
  }

  /** Adds a part; `discontinuity` marks the first part of a new run's first segment. */
  addPart(part: LivePart, discontinuity: boolean): void {
    if (this.#ended) throw new Error('the playlist has ended');
    if (!this.#initUri) throw new Error('a part came before its init segment');
    if (this.#open.length === 0) {
      this.#openMsn = part.msn;
      this.#openDiscontinuity = discontinuity;
    } else if (part.msn !== this.#openMsn || part.index !== this.#open.length) {
      throw new Error(`part ${part.msn}.${part.index} out of order`);
    }
    this.#open.push(part);
    this.#bump();
  }

  /** Completes the segment whose parts were added. */
  finishSegment(segment: Pick<CutSegment, 'msn' | 'durationSec' | 'programDateTime'>): void {
    if (segment.msn !== this.#openMsn || this.#open.length === 0) {
      throw new Error(`segment ${segment.msn} does not match the parts added`);
    }
    this.#segments.push({
      msn: segment.msn,
      parts: this.#open,
      durationSec: segment.durationSec,
      programDateTime: segment.programDateTime,
      discontinuity: this.#openDiscontinuity,
      initUri: this.#initUri!,
    });
    this.#targetDuration = Math.max(
      this.#targetDuration,
      Math.ceil(Number(seconds(segment.durationSec))),
    );
    this.#open = [];
    while (this.#segments.length > this.#options.windowSegments) {
      const left = this.#segments.shift()!;
      if (left.discontinuity) this.#discontinuitySequence += 1;
    }
    // Init segments no listed segment uses any more are let go.
    const used = new Set(this.#segments.map((listed) => listed.initUri).concat(this.#initUri!));
    for (const uri of this.#inits.keys()) if (!used.has(uri)) this.#inits.delete(uri);
    this.#bump();
  }

  /** Ends the playlist (EXT-X-ENDLIST); parts of an unfinished segment are dropped. */
  end(): void {
    this.#open = [];
    this.#ended = true;
    this.#bump();
  }

  /**
   * True once the playlist holds part `part` of segment `msn` (or, without `part`, the whole
   * segment), or the stream ended: what a blocking reload waits for.
   */
  reached(msn: number, part?: number): boolean {
    if (this.#ended) return true;
    const last = this.#segments.at(-1);
    if (part === undefined) return last !== undefined && last.msn >= msn;
    if (last && last.msn >= msn) return true;
    return this.#open.length > 0 && this.#openMsn === msn && this.#open.length > part;
  }

  /**
   * True for a part that does not exist yet but comes next: the next of the open segment, which
   * a preload hint may name, or the first of the next segment.
   */
  isUpcomingPart(uri: string): boolean {
    const position = this.position;
    if (!position || this.#ended) return false;
    const { streamId } = this.#options;
    return (
      uri === partUri(streamId, position.msn, position.part + 1) ||
      uri === partUri(streamId, position.msn + 1, 0)
    );
  }

  /** The bytes of a listed part, of a listed segment (its parts in order) or of an init segment. */
  media(uri: string): Buffer[] | undefined {
    const init = this.#inits.get(uri);
    if (init) return [init];
    const match = /^(.+)-(\d+)(?:\.(\d+))?\.m4s$/.exec(uri);
    if (!match || match[1] !== this.#options.streamId) return undefined;
    const msn = Number(match[2]);
    const parts =
      msn === this.#openMsn && this.#open.length > 0
        ? this.#open
        : this.#segments.find((listed) => listed.msn === msn)?.parts;
    if (!parts) return undefined;
    if (match[3] === undefined) {
      // A whole segment only once it is complete.
      return parts === this.#open ? undefined : parts.map((part) => part.bytes);
    }
    const part = parts[Number(match[3])];
    return part && [part.bytes];
  }

  /** The playlist text, with a report line for each other rendition. */
  render(reports: readonly RenditionReport[]): string {
    const { streamId, partTargetSec } = this.#options;
    const lines = [
      '#EXTM3U',
      `#EXT-X-VERSION:${LIVE_HLS_VERSION}`,
      `#EXT-X-TARGETDURATION:${this.#targetDuration}`,
      `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=${seconds(
        PART_HOLD_BACK_PARTS * partTargetSec,
      )}`,
      `#EXT-X-PART-INF:PART-TARGET=${seconds(partTargetSec)}`,
      `#EXT-X-MEDIA-SEQUENCE:${this.#segments[0]?.msn ?? this.#openMsn}`,
      `#EXT-X-DISCONTINUITY-SEQUENCE:${this.#discontinuitySequence}`,
      '#EXT-X-INDEPENDENT-SEGMENTS',
    ];
    // Parts are listed for the segments that end within three target durations of the edge.
    let fromEdge = this.#open.reduce((sum, part) => sum + part.durationSec, 0);
    const listParts = new Set<number>();
    for (let index = this.#segments.length - 1; index >= 0; index--) {
      if (fromEdge > PART_LISTING_TARGET_DURATIONS * this.#targetDuration) break;
      listParts.add(this.#segments[index]!.msn);
      fromEdge += this.#segments[index]!.durationSec;
    }
    let mapUri: string | undefined;
    const head = (discontinuity: boolean, init: string, programDateTime?: Date) => {
      if (discontinuity) lines.push('#EXT-X-DISCONTINUITY');
      if (init !== mapUri) lines.push(`#EXT-X-MAP:URI="${init}"`);
      mapUri = init;
      if (programDateTime) {
        lines.push(`#EXT-X-PROGRAM-DATE-TIME:${programDateTime.toISOString()}`);
      }
    };
    const partLine = (part: LivePart) =>
      `#EXT-X-PART:DURATION=${seconds(part.durationSec)},URI="${partUri(
        streamId,
        part.msn,
        part.index,
      )}"${part.independent ? ',INDEPENDENT=YES' : ''}`;
    for (const segment of this.#segments) {
      head(segment.discontinuity, segment.initUri, segment.programDateTime);
      if (listParts.has(segment.msn)) lines.push(...segment.parts.map(partLine));
      lines.push(`#EXTINF:${seconds(segment.durationSec)},`, segmentUri(streamId, segment.msn));
    }
    if (this.#ended) {
      lines.push('#EXT-X-ENDLIST');
      return `${lines.join('\n')}\n`;
    }
    if (this.#open.length > 0) {
      head(this.#openDiscontinuity, this.#initUri!);
      lines.push(...this.#open.map(partLine));
    }
    const next = this.#nextPart();
    if (next) lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${partUri(streamId, ...next)}"`);
    for (const report of reports) {
      if (!report.position) continue;
      lines.push(
        `#EXT-X-RENDITION-REPORT:URI="${report.uri}",LAST-MSN=${report.position.msn},LAST-PART=${report.position.part}`,
      );
    }
    return `${lines.join('\n')}\n`;
  }

  // The part that comes next: the open segment's next one, or the first of the next segment
  // once the open one is as long as the cutter lets a segment grow before a key frame ends it.
  #nextPart(): [number, number] | undefined {
    if (this.#open.length > 0) {
      const openSec = this.#open.reduce((sum, part) => sum + part.durationSec, 0);
      if (openSec < this.#options.segmentSeconds * CUT_AT_SHARE_OF_TARGET) {
        return [this.#openMsn, this.#open.length];
      }
      return [this.#openMsn + 1, 0];
    }
    const last = this.#segments.at(-1);
    return last ? [last.msn + 1, 0] : undefined;
  }

  #bump(): void {
    this.#version += 1;
  }
}
