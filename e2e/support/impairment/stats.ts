/**
 * Why a packet was dropped: `blackout`, `random` (independent loss), `burst` (Gilbert-Elliott
 * loss), `queue` (the bottleneck queue behind the rate cap was full), `overflow` (the relay's
 * bound on packets it holds was reached), `sessionLimit` (a new client while every session slot
 * was taken), `foreignSource` (a reply from an address other than the target), `closed` (its
 * session or the relay closed before it was delivered).
 */
export type DropCause =
  | 'blackout'
  | 'random'
  | 'burst'
  | 'queue'
  | 'overflow'
  | 'sessionLimit'
  | 'foreignSource'
  | 'closed';

/** Every drop cause, in a fixed order. */
export const DROP_CAUSES: readonly DropCause[] = [
  'blackout',
  'random',
  'burst',
  'queue',
  'overflow',
  'sessionLimit',
  'foreignSource',
  'closed',
];

/** Counters of one direction of a relay; TCP relays count segments of at most one MSS. */
export interface DirectionStats {
  /** Packets that reached the relay. */
  packetsIn: number;
  /** Bytes that reached the relay. */
  bytesIn: number;
  /** Packets sent on to their destination. */
  packetsForwarded: number;
  /** Bytes sent on to their destination. */
  bytesForwarded: number;
  /** Packets dropped, by cause. */
  dropped: Record<DropCause, number>;
  /** Packets delivered after the packet that came in behind them (explicit reordering). */
  reordered: number;
  /** TCP only: segments the loss settings hit, delivered one retransmission timeout late. */
  retransmitted: number;
  /** Packets now waiting in the bottleneck queue behind the rate cap. */
  queuedPackets: number;
  /** Bytes now waiting in the bottleneck queue behind the rate cap. */
  queuedBytes: number;
  /** Packets the relay holds now anywhere: bottleneck queue, delay line, reordering. */
  inFlightPackets: number;
  /** Bytes the relay holds now anywhere. */
  inFlightBytes: number;
  /** The most packets held at once so far. */
  peakInFlightPackets: number;
  /** The most bytes held at once so far. */
  peakInFlightBytes: number;
}

/** Zeroed counters. */
export function emptyDirectionStats(): DirectionStats {
  return {
    packetsIn: 0,
    bytesIn: 0,
    packetsForwarded: 0,
    bytesForwarded: 0,
    dropped: Object.fromEntries(DROP_CAUSES.map((cause) => [cause, 0])) as Record<
      DropCause,
      number
    >,
    reordered: 0,
    retransmitted: 0,
    queuedPackets: 0,
    queuedBytes: 0,
    inFlightPackets: 0,
    inFlightBytes: 0,
    peakInFlightPackets: 0,
    peakInFlightBytes: 0,
  };
}

/** A deep copy of `stats`, so a caller's snapshot does not move on. */
export function copyDirectionStats(stats: DirectionStats): DirectionStats {
  return { ...stats, dropped: { ...stats.dropped } };
}

/** Packets dropped for any cause. */
export function totalDropped(stats: DirectionStats): number {
  let total = 0;
  for (const cause of DROP_CAUSES) total += stats.dropped[cause];
  return total;
}
