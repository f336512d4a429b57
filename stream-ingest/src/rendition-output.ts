import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '@hearth/server-common';
import { FragmentedMp4Reader, type Mp4Fragment } from './fmp4-reader';
import type { Rendition, SegmentReady } from './hls-types';
import { PartCutter, type CutSegment, type LivePart } from './part-cutter';

/** A rendition's initialization segment, written by one ffmpeg run. */
export interface InitReady {
  /** Name of the rendition. */
  readonly rendition: string;
  /** Index of the run, which names the init segment. */
  readonly run: number;
  /** Its bytes (`ftyp` and `moov`). */
  readonly bytes: Buffer;
}

/** A rendition's next LL-HLS part. */
export interface PartReady {
  /** Name of the rendition. */
  readonly rendition: string;
  /** The part. */
  readonly part: LivePart;
  /** True on the first part of a run's first segment, after another run's output. */
  readonly discontinuity: boolean;
}

/** Where a RenditionOutput sends what it reads. */
export interface RenditionOutputSink {
  /** The run's init segment, before any part. */
  init(init: InitReady): void;
  /** A part, as soon as it is complete. */
  part(part: PartReady): void;
  /** A segment, written whole to disk, after its parts. */
  segment(segment: SegmentReady): void;
  /** ffmpeg wrote something that is not fragmented MP4; nothing more is read. */
  unreadable(error: Error): void;
}

/**
 * One rung's output of one ffmpeg run: its fragmented MP4, read from the pipe into the init
 * segment and parts, cut into segments that are written whole (their parts, concatenated) to
 * `dir` as `<msn>.m4s`.
 */
export class RenditionOutput {
  readonly #rendition: Rendition;
  readonly #run: number;
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #sink: RenditionOutputSink;
  readonly #reader: FragmentedMp4Reader;
  readonly #cutter: PartCutter;
  #segments = 0;

  constructor(options: {
    rendition: Rendition;
    /** Index of the ffmpeg run. */
    run: number;
    /** Existing folder the segments are written to. */
    dir: string;
    segmentSeconds: number;
    /** Media sequence number of the first segment. */
    firstMsn: number;
    logger: Logger;
    sink: RenditionOutputSink;
  }) {
    this.#rendition = options.rendition;
    this.#run = options.run;
    this.#dir = options.dir;
    this.#logger = options.logger;
    this.#sink = options.sink;
    this.#cutter = new PartCutter(options.segmentSeconds, options.firstMsn);
    this.#reader = new FragmentedMp4Reader((error, event) =>
      this.#logger.error({ err: error, event }, 'rendition output listener failed'),
    );
    this.#reader.events
      .on('init', (bytes) =>
        this.#sink.init({ rendition: this.#rendition.name, run: this.#run, bytes }),
      )
      .on('fragment', (fragment) => this.#onFragment(fragment))
      .on('error', (error) => this.#sink.unreadable(error));
  }

  /** Name of the rendition. */
  get rendition(): string {
    return this.#rendition.name;
  }

  /** Media sequence number the next segment gets. */
  get nextMsn(): number {
    return this.#cutter.msn;
  }

  /** Reads more of the pipe. */
  push(chunk: Buffer): void {
    this.#reader.push(chunk);
  }

  /** Ends the output: the segment being cut is complete. */
  finish(): void {
    const last = this.#cutter.flush();
    if (last) this.#writeSegment(last);
  }

  #onFragment(fragment: Mp4Fragment): void {
    const cut = this.#cutter.add(fragment, new Date());
    if (!cut) return;
    if (cut.finished) this.#writeSegment(cut.finished);
    this.#sink.part({
      rendition: this.#rendition.name,
      part: cut.part,
      discontinuity: this.#startsTimeline() && cut.part.index === 0,
    });
  }

  // The first segment of every run after the first follows another ffmpeg's output: timestamps
  // and encoder state restart there.
  #startsTimeline(): boolean {
    return this.#run > 0 && this.#segments === 0;
  }

  #writeSegment(segment: CutSegment): void {
    const localPath = path.join(this.#dir, `${segment.msn}.m4s`);
    try {
      fs.writeFileSync(localPath, Buffer.concat(segment.parts.map((part) => part.bytes)));
    } catch (error) {
      this.#logger.error({ run: this.#run, err: error }, 'cannot write a segment');
      return;
    }
    const discontinuity = this.#startsTimeline();
    this.#segments += 1;
    this.#sink.segment({
      rendition: this.#rendition.name,
      localPath,
      sequence: segment.msn,
      run: this.#run,
      durationSec: segment.durationSec,
      programDateTime: segment.programDateTime,
      discontinuity,
    });
  }
}
