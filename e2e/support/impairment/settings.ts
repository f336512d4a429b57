/**
 * Gilbert-Elliott burst loss: a two-state Markov chain stepped once per packet. In the good state
 * packets are lost with `lossInGood`, in the bad state with `lossInBad`. The chain spends
 * `goodToBad / (goodToBad + badToGood)` of the packets in the bad state, and a stay there lasts
 * `1 / badToGood` packets on average (geometrically distributed).
 */
export interface BurstLossModel {
  /** Probability, per packet, of moving from the good state to the bad one (0-1). */
  goodToBad: number;
  /** Probability, per packet, of moving from the bad state back to the good one (0-1). */
  badToGood: number;
  /** Probability that a packet is lost while in the bad state (0-1); 1 is Gilbert's model. */
  lossInBad: number;
  /** Probability that a packet is lost while in the good state (0-1); 0 when left out. */
  lossInGood?: number;
}

/** What the relay does to the packets of one direction. */
export interface DirectionImpairment {
  /** Share of packets lost independently of each other, in percent (0-100). */
  lossPercent: number;
  /** Burst loss on top of `lossPercent`, or null for none. */
  burstLoss: BurstLossModel | null;
  /** Fixed one-way delay added to every packet, in ms. */
  delayMs: number;
  /** Each packet's delay varies uniformly within ±jitterMs around `delayMs` (never below 0). */
  jitterMs: number;
  /** Whether jitter may reorder packets; when false no packet overtakes the one sent before it. */
  jitterReorders: boolean;
  /** Share of packets, in percent, that swap places with the packet after them. */
  reorderPercent: number;
  /** Rate cap of the bottleneck in kbit/s (1 kbit = 1000 bits), or null for none. */
  rateKbps: number | null;
  /**
   * Size of the bottleneck queue in front of the rate cap, in bytes. A packet that does not fit is
   * dropped (drop-tail), except that an empty queue always takes one packet.
   */
  queueLimitBytes: number;
  /** When true every packet is dropped, including those already queued or delayed. */
  blackout: boolean;
}

/** Impairments of both directions: upstream is client to server, downstream server to client. */
export interface RelayImpairment {
  /** Client to server. */
  upstream: DirectionImpairment;
  /** Server to client. */
  downstream: DirectionImpairment;
}

/**
 * A change to a relay's impairments: top-level fields apply to both directions, then `upstream`
 * and `downstream` override them for one direction. Fields left out keep their current value.
 */
export type ImpairmentPatch = Partial<DirectionImpairment> & {
  /** Changes for the client-to-server direction only. */
  upstream?: Partial<DirectionImpairment>;
  /** Changes for the server-to-client direction only. */
  downstream?: Partial<DirectionImpairment>;
};

/** One direction with nothing impaired. */
export const NO_IMPAIRMENT: Readonly<DirectionImpairment> = Object.freeze({
  lossPercent: 0,
  burstLoss: null,
  delayMs: 0,
  jitterMs: 0,
  jitterReorders: false,
  reorderPercent: 0,
  rateKbps: null,
  queueLimitBytes: 64 * 1024,
  blackout: false,
});

/** The bottleneck queue, in bytes, that holds `ms` of traffic at `rateKbps`. */
export function queueBytesFor(rateKbps: number, ms: number): number {
  return Math.round((rateKbps * ms) / 8);
}

/**
 * The network profiles of issue 11's scenarios. Each applies to both directions: loss and rate
 * cap are per direction, and `delayMs` is one-way, added in each direction, so the round trip
 * through the relay is twice it (200 ms for 3G, 400 ms for 2G) plus any queueing. A path that
 * crosses two relays (sender's and receiver's) is impaired twice.
 */
export const IMPAIRMENT_PROFILES = {
  /** Nothing impaired. */
  good: { ...NO_IMPAIRMENT },
  /** 3G: 3 % loss, 100 ms each way, 1 Mbit/s with a 250 ms bottleneck queue. */
  '3g': {
    ...NO_IMPAIRMENT,
    lossPercent: 3,
    delayMs: 100,
    rateKbps: 1000,
    queueLimitBytes: queueBytesFor(1000, 250),
  },
  /** 2G: 10 % loss, 200 ms each way, 256 kbit/s with a 500 ms bottleneck queue. */
  '2g': {
    ...NO_IMPAIRMENT,
    lossPercent: 10,
    delayMs: 200,
    rateKbps: 256,
    queueLimitBytes: queueBytesFor(256, 500),
  },
  /** 5 % random loss, nothing else: the lower loss level the pass criteria name. */
  'loss-5': { ...NO_IMPAIRMENT, lossPercent: 5 },
  /** 20 % random loss, nothing else. */
  'loss-20': { ...NO_IMPAIRMENT, lossPercent: 20 },
  /** Everything dropped; set `good` again to end it. */
  blackout: { ...NO_IMPAIRMENT, blackout: true },
} as const satisfies Record<string, DirectionImpairment>;

/** The name of one of `IMPAIRMENT_PROFILES`. */
export type ImpairmentProfileName = keyof typeof IMPAIRMENT_PROFILES;

function checkProbability(value: number, field: string): void {
  if (!(Number.isFinite(value) && value >= 0 && value <= 1)) {
    throw new RangeError(`${field} must be a probability between 0 and 1, got ${value}`);
  }
}

function checkRange(value: number, field: string, min: number, max: number): void {
  if (!(Number.isFinite(value) && value >= min && value <= max)) {
    throw new RangeError(`${field} must be between ${min} and ${max}, got ${value}`);
  }
}

/** Throws a RangeError naming the first field of `settings` out of its range. */
export function validateImpairment(settings: DirectionImpairment, direction: string): void {
  checkRange(settings.lossPercent, `${direction}.lossPercent`, 0, 100);
  checkRange(settings.reorderPercent, `${direction}.reorderPercent`, 0, 100);
  checkRange(settings.delayMs, `${direction}.delayMs`, 0, 60_000);
  checkRange(settings.jitterMs, `${direction}.jitterMs`, 0, 60_000);
  checkRange(settings.queueLimitBytes, `${direction}.queueLimitBytes`, 0, 64 * 1024 * 1024);
  if (settings.rateKbps !== null) {
    checkRange(settings.rateKbps, `${direction}.rateKbps`, 1, 100_000_000);
  }
  if (settings.burstLoss !== null) {
    const { goodToBad, badToGood, lossInBad, lossInGood } = settings.burstLoss;
    checkProbability(goodToBad, `${direction}.burstLoss.goodToBad`);
    checkProbability(badToGood, `${direction}.burstLoss.badToGood`);
    checkProbability(lossInBad, `${direction}.burstLoss.lossInBad`);
    checkProbability(lossInGood ?? 0, `${direction}.burstLoss.lossInGood`);
  }
  if (typeof settings.jitterReorders !== 'boolean' || typeof settings.blackout !== 'boolean') {
    throw new TypeError(`${direction}.jitterReorders and ${direction}.blackout must be booleans`);
  }
}

/**
 * The impairments after `patch`, validated; throws (changing nothing) if any field is out of
 * range. Unknown fields are refused, so a misspelt setting cannot pass silently.
 */
export function applyPatch(current: RelayImpairment, patch: ImpairmentPatch): RelayImpairment {
  const { upstream, downstream, ...both } = patch;
  for (const part of [both, upstream ?? {}, downstream ?? {}]) {
    for (const key of Object.keys(part)) {
      if (!(key in NO_IMPAIRMENT)) throw new TypeError(`unknown impairment setting "${key}"`);
    }
  }
  const next: RelayImpairment = {
    upstream: { ...current.upstream, ...both, ...upstream },
    downstream: { ...current.downstream, ...both, ...downstream },
  };
  validateImpairment(next.upstream, 'upstream');
  validateImpairment(next.downstream, 'downstream');
  return next;
}
