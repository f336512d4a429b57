/** Opus bitrates a sender's microphone is held to, best first, in kbit/s. */
export const OPUS_LEVELS_KBPS = [64, 32, 16] as const;

/** The hysteresis of the seeds: when a sender's audio bitrate steps down, and back up. */
export const OPUS_ADAPTATION = {
  /** Loss above which the bitrate steps down, in percent. */
  stepDownLossPercent: 10,
  /** Loss below which the link counts as clean, in percent. */
  cleanLossPercent: 2,
  /** How long the link must stay clean before the bitrate steps up. */
  cleanForMs: 10_000,
  /** The shortest time between two changes. */
  minIntervalMs: 5000,
} as const;

/**
 * One sender's Opus bitrate level, adapted report after report to the loss on its link: one
 * step down above 10 % loss, one step up after 10 s below 2 %, at most one change per 5 s.
 * In-band FEC stays on at every level; a lower bitrate leaves it more of the packet.
 */
export class OpusAdaptation {
  #level = 0;
  #changedAt = -Infinity;
  #cleanSince: number | undefined;

  /** The current level's bitrate, in kbit/s. */
  get maxBitrateKbps(): number {
    return OPUS_LEVELS_KBPS[this.#level]!;
  }

  /** Folds in the loss measured at `now`; returns the new bitrate when the level changed. */
  update(lossPercent: number, now: number): number | undefined {
    if (lossPercent < OPUS_ADAPTATION.cleanLossPercent) this.#cleanSince ??= now;
    else this.#cleanSince = undefined;
    if (now - this.#changedAt < OPUS_ADAPTATION.minIntervalMs) return undefined;
    const lowest = OPUS_LEVELS_KBPS.length - 1;
    if (lossPercent > OPUS_ADAPTATION.stepDownLossPercent && this.#level < lowest) {
      return this.#change(this.#level + 1, now);
    }
    const clean =
      this.#cleanSince !== undefined && now - this.#cleanSince >= OPUS_ADAPTATION.cleanForMs;
    if (clean && this.#level > 0) {
      // The next step up needs another clean stretch.
      this.#cleanSince = now;
      return this.#change(this.#level - 1, now);
    }
    return undefined;
  }

  #change(level: number, now: number): number {
    this.#level = level;
    this.#changedAt = now;
    return this.maxBitrateKbps;
  }
}
