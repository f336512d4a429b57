import { performance } from 'node:perf_hooks';
import { packetDelayMs, serializationMs, type ImpairmentDice } from './dice';
import { Fifo, MinHeap } from './queues';
import type { DirectionImpairment } from './settings';
import {
  copyDirectionStats,
  emptyDirectionStats,
  type DirectionStats,
  type DropCause,
} from './stats';

/** Where the packets of one session and direction go once they have crossed the link. */
export interface PacketDestination {
  /** Sends a packet on; returns false when the destination is gone. */
  deliver(packet: Buffer): boolean;
  /** Told when a packet the link took in is dropped after all (blackout, close). */
  discarded?(): void;
}

/** Bounds on what one direction of a link holds. */
export interface LinkBounds {
  /** Most packets held at once (queue, delay line, reordering); more are dropped as overflow. */
  maxInFlightPackets: number;
  /** Most bytes held at once; more are dropped as overflow. */
  maxInFlightBytes: number;
}

// A packet picked for reordering waits at most this long for a packet to overtake it, so a quiet
// stream does not hold its last packet for ever.
const REORDER_HOLD_MAX_MS = 100;

interface HeldPacket {
  packet: Buffer;
  destination: PacketDestination;
  jitterDraw: number;
  reorder: boolean;
  arrivedAt: number;
  deliverAt: number;
  order: number;
}

/**
 * One direction of an impaired datagram link, shared by every session of a relay like one
 * bottleneck link. A packet goes through, in order: blackout, burst loss, random loss, the bound
 * on held packets, the rate cap (a drop-tail queue drained at the rate: serialization delay, a
 * token bucket one packet deep), the delay line (fixed delay plus jitter, first-in first-out
 * unless jitter may reorder), and explicit reordering (a packet waits for the next one to pass).
 * Settings apply to packets from the moment they change; packets already delayed keep their
 * delivery time, and a blackout also drops every packet held.
 */
export class DatagramLink {
  readonly #dice: ImpairmentDice;
  readonly #bounds: LinkBounds;
  readonly #stats = emptyDirectionStats();
  readonly #bottleneck = new Fifo<HeldPacket>();
  readonly #delayLine = new MinHeap<HeldPacket>(
    (a, b) => a.deliverAt < b.deliverAt || (a.deliverAt === b.deliverAt && a.order < b.order),
  );
  #settings: DirectionImpairment;
  #nextOrder = 0;
  #busyUntil = 0;
  #lastDeliverAt = 0;
  #reorderHeld: HeldPacket | null = null;
  #bottleneckTimer: NodeJS.Timeout | null = null;
  #delayTimer: NodeJS.Timeout | null = null;
  #delayTimerAt = 0;
  #reorderTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(dice: ImpairmentDice, settings: DirectionImpairment, bounds: LinkBounds) {
    this.#dice = dice;
    this.#settings = settings;
    this.#bounds = bounds;
  }

  /** The settings in force. */
  get settings(): DirectionImpairment {
    return this.#settings;
  }

  /** A snapshot of the counters. */
  stats(): DirectionStats {
    return copyDirectionStats(this.#stats);
  }

  /** Changes the settings; see the class comment for what happens to packets already held. */
  update(settings: DirectionImpairment): void {
    // At a new rate, the packet at the head of the queue starts its serialization again from now,
    // not from when the packet before it left: after a long wait at a low rate that would release
    // a burst.
    if (settings.rateKbps !== this.#settings.rateKbps) {
      this.#busyUntil = Math.max(this.#busyUntil, performance.now());
    }
    this.#settings = settings;
    if (this.#closed) return;
    if (settings.blackout) this.#dropHeld('blackout');
    else this.#drainBottleneck();
  }

  /**
   * Takes one packet in, to be delivered to `destination` if it survives. Returns whether the link
   * holds it now; if so, exactly one of `destination.deliver` and `destination.discarded` follows.
   */
  push(packet: Buffer, destination: PacketDestination): boolean {
    const stats = this.#stats;
    const settings = this.#settings;
    stats.packetsIn++;
    stats.bytesIn += packet.length;
    // Roll even for packets dropped below, so each packet's fate depends only on its index.
    const fate = this.#dice.roll(settings);
    if (this.#closed) return this.#count('closed');
    if (settings.blackout) return this.#count('blackout');
    if (fate.lostTo !== null) return this.#count(fate.lostTo);
    if (
      stats.inFlightPackets + 1 > this.#bounds.maxInFlightPackets ||
      stats.inFlightBytes + packet.length > this.#bounds.maxInFlightBytes
    ) {
      return this.#count('overflow');
    }
    if (
      settings.rateKbps !== null &&
      this.#bottleneck.length > 0 &&
      stats.queuedBytes + packet.length > settings.queueLimitBytes
    ) {
      return this.#count('queue');
    }
    const held: HeldPacket = {
      packet,
      destination,
      jitterDraw: fate.jitterDraw,
      reorder: fate.reorder,
      arrivedAt: performance.now(),
      deliverAt: 0,
      order: this.#nextOrder++,
    };
    stats.inFlightPackets++;
    stats.inFlightBytes += packet.length;
    stats.peakInFlightPackets = Math.max(stats.peakInFlightPackets, stats.inFlightPackets);
    stats.peakInFlightBytes = Math.max(stats.peakInFlightBytes, stats.inFlightBytes);
    if (settings.rateKbps === null && this.#bottleneck.length === 0) {
      this.#enterDelayLine(held, held.arrivedAt);
      return true;
    }
    this.#bottleneck.push(held);
    stats.queuedPackets++;
    stats.queuedBytes += packet.length;
    // An armed timer already waits for the head of the queue, which a packet at the back leaves as is.
    if (!this.#bottleneckTimer) this.#drainBottleneck();
    return true;
  }

  /** Counts a packet the relay refused before it entered the link (in and dropped). */
  refuse(packet: Buffer, cause: DropCause): void {
    this.#stats.packetsIn++;
    this.#stats.bytesIn += packet.length;
    this.#count(cause);
  }

  /** Drops everything held and stops the timers; later packets are counted as closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dropHeld('closed');
  }

  #count(cause: DropCause): false {
    this.#stats.dropped[cause]++;
    return false;
  }

  // Sends every packet whose serialization has ended by now into the delay line, and sets a timer
  // for the next one. Departure times come from the link's own clock (`#busyUntil`), not from when
  // the timer fired, so a late timer delays packets but does not lower the throughput.
  #drainBottleneck(): void {
    if (this.#bottleneckTimer) clearTimeout(this.#bottleneckTimer);
    this.#bottleneckTimer = null;
    const now = performance.now();
    const stats = this.#stats;
    for (;;) {
      const head = this.#bottleneck.peek();
      if (!head) return;
      const rate = this.#settings.rateKbps;
      let departure = now;
      if (rate !== null) {
        departure =
          Math.max(this.#busyUntil, head.arrivedAt) + serializationMs(head.packet.length, rate);
        if (departure > now) {
          this.#bottleneckTimer = setTimeout(
            () => this.#drainBottleneck(),
            Math.max(1, Math.ceil(departure - now)),
          );
          return;
        }
        this.#busyUntil = departure;
      }
      this.#bottleneck.shift();
      stats.queuedPackets--;
      stats.queuedBytes -= head.packet.length;
      this.#enterDelayLine(head, departure);
    }
  }

  #enterDelayLine(held: HeldPacket, departedAt: number): void {
    const settings = this.#settings;
    let deliverAt = departedAt + packetDelayMs(settings, held.jitterDraw);
    if (!settings.jitterReorders) deliverAt = Math.max(deliverAt, this.#lastDeliverAt);
    this.#lastDeliverAt = Math.max(this.#lastDeliverAt, deliverAt);
    held.deliverAt = deliverAt;
    this.#delayLine.push(held);
    // Re-arming a timer per packet is the cost to avoid when one already fires early enough.
    if (this.#delayTimer && this.#delayTimerAt <= deliverAt) return;
    this.#deliverDue();
  }

  #deliverDue(): void {
    if (this.#delayTimer) clearTimeout(this.#delayTimer);
    this.#delayTimer = null;
    const now = performance.now();
    for (;;) {
      const next = this.#delayLine.peek();
      if (!next) return;
      if (next.deliverAt > now) {
        this.#delayTimerAt = next.deliverAt;
        this.#delayTimer = setTimeout(
          () => this.#deliverDue(),
          Math.max(1, Math.ceil(next.deliverAt - now)),
        );
        return;
      }
      this.#delayLine.pop();
      this.#leave(next);
    }
  }

  // Explicit reordering: a picked packet waits in one slot until the next packet has gone out.
  #leave(held: HeldPacket): void {
    if (held.reorder && this.#reorderHeld === null) {
      this.#reorderHeld = held;
      this.#reorderTimer = setTimeout(() => this.#releaseReorderHeld(false), REORDER_HOLD_MAX_MS);
      return;
    }
    this.#send(held);
    if (this.#reorderHeld !== null) this.#releaseReorderHeld(true);
  }

  #releaseReorderHeld(overtaken: boolean): void {
    const held = this.#reorderHeld;
    if (this.#reorderTimer) clearTimeout(this.#reorderTimer);
    this.#reorderTimer = null;
    this.#reorderHeld = null;
    if (!held) return;
    if (overtaken) this.#stats.reordered++;
    this.#send(held);
  }

  #send(held: HeldPacket): void {
    const stats = this.#stats;
    stats.inFlightPackets--;
    stats.inFlightBytes -= held.packet.length;
    if (!held.destination.deliver(held.packet)) {
      this.#count('closed');
      return;
    }
    stats.packetsForwarded++;
    stats.bytesForwarded += held.packet.length;
  }

  #dropHeld(cause: DropCause): void {
    for (const timer of [this.#bottleneckTimer, this.#delayTimer, this.#reorderTimer]) {
      if (timer) clearTimeout(timer);
    }
    this.#bottleneckTimer = this.#delayTimer = this.#reorderTimer = null;
    const held = [...this.#bottleneck.drain(), ...this.#delayLine.drain()];
    if (this.#reorderHeld) held.push(this.#reorderHeld);
    this.#reorderHeld = null;
    // Later packets need not wait behind the dropped ones.
    this.#lastDeliverAt = 0;
    const stats = this.#stats;
    stats.dropped[cause] += held.length;
    stats.queuedPackets = stats.queuedBytes = 0;
    stats.inFlightPackets = stats.inFlightBytes = 0;
    for (const packet of held) packet.destination.discarded?.();
  }
}
