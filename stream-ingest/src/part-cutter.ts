import type { Mp4Fragment } from './fmp4-reader';

/** One LL-HLS partial segment: a fragment of a rendition's fMP4 output. */
export interface LivePart {
  /** Media sequence number of the segment it belongs to. */
  readonly msn: number;
  /** Its index within that segment, from 0. */
  readonly index: number;
  /** Its bytes (`moof` and `mdat`). */
  readonly bytes: Buffer;
  /** Duration of its video, in seconds. */
  readonly durationSec: number;
  /** True when it starts with a key frame. */
  readonly independent: boolean;
}

/** A finished segment: its parts in order, whose bytes it is the concatenation of. */
export interface CutSegment {
  /** Media sequence number. */
  readonly msn: number;
  /** Its parts, in order. */
  readonly parts: readonly LivePart[];
  /** Sum of its parts' durations, in seconds. */
  readonly durationSec: number;
  /** Wall-clock time of its first frame. */
  readonly programDateTime: Date;
}

/**
 * A key frame starts a new segment once the current one is this share of the target long: the
 * ladder forces key frames exactly at segment boundaries, and a passthrough rung takes the
 * publisher's, which may come more often than the target.
 */
export const CUT_AT_SHARE_OF_TARGET = 0.9;

/**
 * Groups one rendition's fragments into parts and segments: every fragment is a part, and a
 * segment ends where a fragment starting with a key frame begins the next one, once the segment
 * is nearly `segmentSeconds` long.
 */
export class PartCutter {
  readonly #segmentSeconds: number;
  #msn: number;
  #parts: LivePart[] = [];
  #durationSec = 0;
  #startedAt = new Date(0);

  /** Segments are numbered from `firstMsn`. */
  constructor(segmentSeconds: number, firstMsn: number) {
    if (!(segmentSeconds > 0)) throw new RangeError('segmentSeconds must be > 0');
    this.#segmentSeconds = segmentSeconds;
    this.#msn = firstMsn;
  }

  /** Media sequence number of the segment being cut now. */
  get msn(): number {
    return this.#msn;
  }

  /**
   * Adds the next fragment, received at `now`; returns it as a part, and the segment it ended if
   * it starts the next one. Fragments before the first key frame decode on nothing and are
   * dropped (undefined).
   */
  add(
    fragment: Mp4Fragment,
    now: Date,
  ): { part: LivePart; finished: CutSegment | undefined } | undefined {
    let finished: CutSegment | undefined;
    if (this.#parts.length === 0 && !fragment.independent) return undefined;
    if (
      fragment.independent &&
      this.#parts.length > 0 &&
      this.#durationSec >= this.#segmentSeconds * CUT_AT_SHARE_OF_TARGET
    ) {
      finished = this.flush();
    }
    if (this.#parts.length === 0) {
      // The fragment's frames were made over its duration before it was written.
      this.#startedAt = new Date(now.getTime() - fragment.durationSec * 1000);
    }
    const part: LivePart = {
      msn: this.#msn,
      index: this.#parts.length,
      bytes: fragment.bytes,
      durationSec: fragment.durationSec,
      independent: fragment.independent,
    };
    this.#parts.push(part);
    this.#durationSec += fragment.durationSec;
    return { part, finished };
  }

  /** Ends the segment being cut, at the end of the output; undefined when it has no part. */
  flush(): CutSegment | undefined {
    if (this.#parts.length === 0) return undefined;
    const segment: CutSegment = {
      msn: this.#msn,
      parts: this.#parts,
      durationSec: this.#durationSec,
      programDateTime: this.#startedAt,
    };
    this.#msn += 1;
    this.#parts = [];
    this.#durationSec = 0;
    return segment;
  }
}
