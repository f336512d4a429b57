import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { packetDelayMs, serializationMs, type ImpairmentDice } from './dice';
import { Fifo } from './queues';
import type { DirectionImpairment } from './settings';
import { copyDirectionStats, emptyDirectionStats, type DirectionStats } from './stats';

/** Largest segment a stream is cut into: an Ethernet MTU minus IPv4, TCP and timestamp headers. */
export const SEGMENT_BYTES = 1448;

// Linux's minimum retransmission timeout. A segment the loss settings hit arrives this much plus
// one round trip late, as if the sender's timer had fired and it was sent again.
const MIN_RETRANSMISSION_TIMEOUT_MS = 200;

interface Segment {
  data: Buffer;
  arrivedAt: number;
  jitterDraw: number;
  lost: boolean;
  departure: number;
  deliverAt: number;
}

/**
 * One direction of an impaired stream link, shared by every connection of a TCP relay. A byte
 * stream cannot lose bytes, so here the impairments act as they do on TCP over a bad link: a
 * segment hit by loss arrives one retransmission timeout (200 ms plus the round trip) late and
 * holds up what follows it; a blackout stalls the stream until it ends; the rate cap paces
 * segments and a full buffer pauses the sender (backpressure) instead of dropping; jitter never
 * reorders. A change of settings re-times the segments that have not left the bottleneck yet.
 */
export class StreamDirection {
  readonly #dice: ImpairmentDice;
  readonly #stats = emptyDirectionStats();
  readonly #pipes = new Set<StreamPipe>();
  #settings: DirectionImpairment;
  #busyUntil = 0;

  constructor(dice: ImpairmentDice, settings: DirectionImpairment) {
    this.#dice = dice;
    this.#settings = settings;
  }

  /** The settings in force. */
  get settings(): DirectionImpairment {
    return this.#settings;
  }

  /** The counters, live; pipes update them. */
  get counters(): DirectionStats {
    return this.#stats;
  }

  /** A snapshot of the counters. */
  stats(): DirectionStats {
    return copyDirectionStats(this.#stats);
  }

  /** Changes the settings and re-times what every connection holds. */
  update(settings: DirectionImpairment): void {
    this.#settings = settings;
    this.#busyUntil = performance.now();
    for (const pipe of this.#pipes) pipe.retime();
  }

  /** Decides the fate of the next segment. */
  roll(): { jitterDraw: number; lost: boolean } {
    const fate = this.#dice.roll(this.#settings);
    return { jitterDraw: fate.jitterDraw, lost: fate.lostTo !== null };
  }

  /** Reserves the bottleneck for `bytes` ready at `readyAt`; returns when they have crossed it. */
  reserve(bytes: number, readyAt: number): number {
    const rate = this.#settings.rateKbps;
    if (rate === null) return readyAt;
    this.#busyUntil = Math.max(this.#busyUntil, readyAt) + serializationMs(bytes, rate);
    return this.#busyUntil;
  }

  /** Registers a pipe, so setting changes reach it. */
  attach(pipe: StreamPipe): void {
    this.#pipes.add(pipe);
  }

  /** Forgets a closed pipe. */
  detach(pipe: StreamPipe): void {
    this.#pipes.delete(pipe);
  }
}

/**
 * One direction of one connection: reads `source`, cuts the bytes into segments, holds each for
 * the time the direction's impairments give it, and writes them in order to `sink`. It ends
 * `sink` once `source` has ended and everything held is written.
 */
export class StreamPipe {
  readonly #source: net.Socket;
  readonly #sink: net.Socket;
  readonly #direction: StreamDirection;
  readonly #maxBufferedBytes: number;
  readonly #onActivity: () => void;
  // Segments not timed yet (during a blackout), then timed ones in delivery order.
  readonly #waiting = new Fifo<Segment>();
  readonly #scheduled = new Fifo<Segment>();
  #bufferedBytes = 0;
  #lastDeliverAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #sourceEnded = false;
  #sinkEnded = false;
  #sourcePaused = false;
  #waitingForDrain = false;
  #closed = false;

  constructor(options: {
    source: net.Socket;
    sink: net.Socket;
    direction: StreamDirection;
    maxBufferedBytes: number;
    onActivity: () => void;
  }) {
    this.#source = options.source;
    this.#sink = options.sink;
    this.#direction = options.direction;
    this.#maxBufferedBytes = options.maxBufferedBytes;
    this.#onActivity = options.onActivity;
    this.#direction.attach(this);
    this.#source.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#source.on('end', () => {
      this.#sourceEnded = true;
      this.#deliverDue();
    });
    this.#sink.on('drain', () => {
      this.#waitingForDrain = false;
      this.#deliverDue();
    });
  }

  /** Re-times held segments after a settings change: see `StreamDirection`. */
  retime(): void {
    if (this.#closed) return;
    const now = performance.now();
    const settings = this.#direction.settings;
    // Segments still in the bottleneck, or every segment in a blackout, go back to waiting.
    const keep: Segment[] = [];
    const requeue: Segment[] = [];
    for (const segment of this.#scheduled.drain()) {
      if (settings.blackout || segment.departure > now) requeue.push(segment);
      else keep.push(segment);
    }
    const waiting = [...requeue, ...this.#waiting.drain()];
    for (const segment of keep) this.#scheduled.push(segment);
    this.#lastDeliverAt = keep.at(-1)?.deliverAt ?? now;
    for (const segment of waiting) {
      segment.arrivedAt = Math.max(segment.arrivedAt, now);
      this.#waiting.push(segment);
    }
    this.#scheduleWaiting();
    this.#deliverDue();
  }

  /** Stops the timers and drops what is held (counted as closed); the owner closes the sockets. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const counters = this.#direction.counters;
    const dropped = this.#waiting.length + this.#scheduled.length;
    counters.dropped.closed += dropped;
    counters.inFlightPackets -= dropped;
    counters.inFlightBytes -= this.#bufferedBytes;
    this.#waiting.drain();
    this.#scheduled.drain();
    this.#bufferedBytes = 0;
    this.#direction.detach(this);
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    this.#onActivity();
    const counters = this.#direction.counters;
    const now = performance.now();
    for (let offset = 0; offset < chunk.length; offset += SEGMENT_BYTES) {
      const data = chunk.subarray(offset, offset + SEGMENT_BYTES);
      const { jitterDraw, lost } = this.#direction.roll();
      counters.packetsIn++;
      counters.bytesIn += data.length;
      if (lost) counters.retransmitted++;
      counters.inFlightPackets++;
      counters.inFlightBytes += data.length;
      counters.peakInFlightPackets = Math.max(
        counters.peakInFlightPackets,
        counters.inFlightPackets,
      );
      counters.peakInFlightBytes = Math.max(counters.peakInFlightBytes, counters.inFlightBytes);
      this.#bufferedBytes += data.length;
      this.#waiting.push({ data, arrivedAt: now, jitterDraw, lost, departure: 0, deliverAt: 0 });
    }
    if (this.#bufferedBytes >= this.#maxBufferedBytes && !this.#sourcePaused) {
      this.#sourcePaused = true;
      this.#source.pause();
    }
    this.#scheduleWaiting();
    if (!this.#timer) this.#deliverDue();
  }

  #scheduleWaiting(): void {
    const settings = this.#direction.settings;
    if (settings.blackout) return;
    for (;;) {
      const segment = this.#waiting.shift();
      if (!segment) return;
      segment.departure = this.#direction.reserve(segment.data.length, segment.arrivedAt);
      let deliverAt = segment.departure + packetDelayMs(settings, segment.jitterDraw);
      if (segment.lost) deliverAt += MIN_RETRANSMISSION_TIMEOUT_MS + 2 * settings.delayMs;
      deliverAt = Math.max(deliverAt, this.#lastDeliverAt);
      this.#lastDeliverAt = segment.deliverAt = deliverAt;
      this.#scheduled.push(segment);
    }
  }

  #deliverDue(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#closed || this.#waitingForDrain) return;
    const counters = this.#direction.counters;
    const now = performance.now();
    for (;;) {
      const head = this.#scheduled.peek();
      if (!head) break;
      if (head.deliverAt > now) {
        this.#timer = setTimeout(
          () => this.#deliverDue(),
          Math.max(1, Math.ceil(head.deliverAt - now)),
        );
        return;
      }
      this.#scheduled.shift();
      this.#bufferedBytes -= head.data.length;
      counters.inFlightPackets--;
      counters.inFlightBytes -= head.data.length;
      counters.packetsForwarded++;
      counters.bytesForwarded += head.data.length;
      this.#onActivity();
      const flushed = this.#sink.write(head.data);
      if (this.#sourcePaused && this.#bufferedBytes <= this.#maxBufferedBytes / 2) {
        this.#sourcePaused = false;
        this.#source.resume();
      }
      if (!flushed) {
        this.#waitingForDrain = true;
        return;
      }
    }
    if (this.#sourceEnded && this.#waiting.length === 0 && !this.#sinkEnded) {
      this.#sinkEnded = true;
      this.#sink.end();
    }
  }
}
