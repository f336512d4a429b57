import { SeededRandom } from './random';
import type { DirectionImpairment } from './settings';

/** Which random impairment lost a packet. */
export type LossCause = 'random' | 'burst';

/** The random decisions about one packet. */
export interface PacketFate {
  /** The impairment that lost the packet, or null when it goes on. */
  lostTo: LossCause | null;
  /** A uniform draw in [0, 1) that places the packet's delay within the jitter range. */
  jitterDraw: number;
  /** Whether the packet swaps places with the packet after it. */
  reorder: boolean;
}

/**
 * The random side of one direction of a link: one seeded stream per impairment, each drawn once
 * per packet whatever the settings, so the n-th packet's fate under one impairment depends only
 * on the seed and n, and changing another impairment does not shift it.
 */
export class ImpairmentDice {
  readonly #loss: SeededRandom;
  readonly #burstStep: SeededRandom;
  readonly #burstLoss: SeededRandom;
  readonly #jitter: SeededRandom;
  readonly #reorder: SeededRandom;
  #inBadState = false;

  constructor(seed: number, direction: string) {
    this.#loss = SeededRandom.derive(seed, `${direction}/loss`);
    this.#burstStep = SeededRandom.derive(seed, `${direction}/burst-step`);
    this.#burstLoss = SeededRandom.derive(seed, `${direction}/burst-loss`);
    this.#jitter = SeededRandom.derive(seed, `${direction}/jitter`);
    this.#reorder = SeededRandom.derive(seed, `${direction}/reorder`);
  }

  /** Whether the burst-loss chain is in its bad state. */
  get inBadState(): boolean {
    return this.#inBadState;
  }

  /** Decides one packet's fate under `settings`, stepping the burst-loss chain once. */
  roll(settings: DirectionImpairment): PacketFate {
    const lossDraw = this.#loss.next();
    const stepDraw = this.#burstStep.next();
    const burstDraw = this.#burstLoss.next();
    const jitterDraw = this.#jitter.next();
    const reorderDraw = this.#reorder.next();
    const model = settings.burstLoss;
    let burstLost = false;
    if (model === null) {
      this.#inBadState = false;
    } else {
      this.#inBadState = this.#inBadState
        ? stepDraw >= model.badToGood
        : stepDraw < model.goodToBad;
      burstLost = burstDraw < (this.#inBadState ? model.lossInBad : (model.lossInGood ?? 0));
    }
    let lostTo: LossCause | null = null;
    if (burstLost) lostTo = 'burst';
    else if (lossDraw * 100 < settings.lossPercent) lostTo = 'random';
    return { lostTo, jitterDraw, reorder: reorderDraw * 100 < settings.reorderPercent };
  }
}

/** The delay of a packet whose jitter draw is `jitterDraw`, under `settings`, in ms. */
export function packetDelayMs(settings: DirectionImpairment, jitterDraw: number): number {
  return Math.max(0, settings.delayMs + (2 * jitterDraw - 1) * settings.jitterMs);
}

/** The time `bytes` take to cross a link of `rateKbps`, in ms (kbit/s is bits per ms). */
export function serializationMs(bytes: number, rateKbps: number): number {
  return (bytes * 8) / rateKbps;
}
