import { describe, expect, it } from 'vitest';
import {
  applyPatch,
  DatagramLink,
  IMPAIRMENT_PROFILES,
  ImpairmentDice,
  NO_IMPAIRMENT,
  SeededRandom,
  totalDropped,
  type DirectionImpairment,
} from './support/impairment';
import { waitFor } from '../voice-sfu/test/support/plain-peers';

const BOUNDS = { maxInFlightPackets: 100_000, maxInFlightBytes: 64 * 1024 * 1024 };

/** A link with `settings`, and the sequence numbers it delivered (in order) and discarded. */
function linkWith(settings: Partial<DirectionImpairment>, seed = 1) {
  const delivered: number[] = [];
  const discarded: number[] = [];
  const link = new DatagramLink(
    new ImpairmentDice(seed, 'upstream'),
    { ...NO_IMPAIRMENT, ...settings },
    BOUNDS,
  );
  const push = (sequence: number, bytes = 100) => {
    const packet = Buffer.alloc(bytes);
    packet.writeUInt32BE(sequence);
    link.push(packet, {
      deliver: (sent) => {
        delivered.push(sent.readUInt32BE(0));
        return true;
      },
      discarded: () => discarded.push(sequence),
    });
  };
  return { link, delivered, discarded, push };
}

/** Lengths of the runs of consecutive sequence numbers missing from `delivered` out of `count`. */
function lossRuns(delivered: number[], count: number): number[] {
  const received = new Set(delivered);
  const runs: number[] = [];
  let run = 0;
  for (let sequence = 0; sequence < count; sequence++) {
    if (received.has(sequence)) {
      if (run > 0) runs.push(run);
      run = 0;
    } else {
      run++;
    }
  }
  if (run > 0) runs.push(run);
  return runs;
}

describe('SeededRandom', () => {
  it('next() repeats its sequence for a seed, differs for another, and stays in [0, 1)', () => {
    const draws = (seed: number) => {
      const random = new SeededRandom(seed);
      return Array.from({ length: 1000 }, () => random.next());
    };
    const first = draws(5);
    expect(draws(5)).toEqual(first);
    expect(draws(6)).not.toEqual(first);
    expect(first.every((value) => value >= 0 && value < 1)).toBe(true);
    const mean = first.reduce((sum, value) => sum + value, 0) / first.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });
});

describe('DatagramLink', () => {
  it('with 20 % random loss drops 20 % of 10,000 packets, the same ones for the same seed', () => {
    const run = (seed: number) => {
      const { link, delivered, push } = linkWith({ lossPercent: 20 }, seed);
      for (let sequence = 0; sequence < 10_000; sequence++) push(sequence);
      return { delivered, stats: link.stats() };
    };
    const first = run(42);
    expect(first.stats.dropped.random).toBeGreaterThan(1800);
    expect(first.stats.dropped.random).toBeLessThan(2200);
    expect(first.stats.packetsForwarded + first.stats.dropped.random).toBe(10_000);
    expect(first.delivered).toHaveLength(first.stats.packetsForwarded);
    // Independent loss: runs of losses are short, about 1 / (1 - 0.2) packets long on average.
    const runs = lossRuns(first.delivered, 10_000);
    expect(runs.reduce((sum, run) => sum + run, 0) / runs.length).toBeLessThan(1.4);
    expect(run(42).delivered).toEqual(first.delivered);
    expect(run(43).delivered).not.toEqual(first.delivered);
  });

  it('with Gilbert-Elliott burst loss loses in runs whose lengths follow the two-state model', () => {
    const goodToBad = 0.05;
    const badToGood = 0.3;
    const count = 100_000;
    const { link, delivered, push } = linkWith(
      { burstLoss: { goodToBad, badToGood, lossInBad: 1 } },
      7,
    );
    for (let sequence = 0; sequence < count; sequence++) push(sequence);
    const stats = link.stats();
    // The chain spends p / (p + r) of the packets in the bad state, where all are lost.
    expect(stats.dropped.burst / count).toBeCloseTo(goodToBad / (goodToBad + badToGood), 1.5);
    expect(stats.dropped.random).toBe(0);
    // A stay in the bad state is geometric: mean 1 / r, and a share r of runs last one packet.
    const runs = lossRuns(delivered, count);
    const meanRun = runs.reduce((sum, run) => sum + run, 0) / runs.length;
    expect(meanRun).toBeGreaterThan((1 / badToGood) * 0.93);
    expect(meanRun).toBeLessThan((1 / badToGood) * 1.07);
    const singles = runs.filter((run) => run === 1).length / runs.length;
    expect(singles).toBeGreaterThan(badToGood - 0.03);
    expect(singles).toBeLessThan(badToGood + 0.03);
    // Gaps between bursts are geometric too: mean 1 / p.
    expect((count - stats.dropped.burst) / runs.length).toBeCloseTo(1 / goodToBad, -0.5);
  });

  it('keeps the loss pattern of one seed when jitter or reordering are turned on', async () => {
    const survivors = async (settings: Partial<DirectionImpairment>) => {
      const { link, delivered, push } = linkWith({ lossPercent: 10, ...settings }, 9);
      for (let sequence = 0; sequence < 2000; sequence++) push(sequence);
      await waitFor(() => link.stats().inFlightPackets === 0, 2000, 'the link to empty');
      return [...delivered].sort((a, b) => a - b);
    };
    const plain = await survivors({});
    expect(plain.length).toBeLessThan(1900);
    expect(await survivors({ reorderPercent: 30, jitterMs: 2, jitterReorders: true })).toEqual(
      plain,
    );
  });

  it('with 10 % reordering swaps picked packets with the next one and loses none', async () => {
    const { link, delivered, push } = linkWith({ reorderPercent: 10 }, 3);
    for (let sequence = 0; sequence < 5000; sequence++) push(sequence);
    // The last packet may be waiting for one to overtake it; it leaves on its own within 100 ms.
    await waitFor(() => delivered.length === 5000, 2000, 'every packet');
    expect([...delivered].sort((a, b) => a - b)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    let swaps = 0;
    for (let i = 1; i < delivered.length; i++) {
      if (delivered[i]! < delivered[i - 1]!) {
        swaps++;
        // A swap moves a packet back by exactly one place.
        expect(delivered[i - 1]).toBe(delivered[i]! + 1);
      }
    }
    const stats = link.stats();
    expect(stats.reordered).toBe(swaps);
    // A picked packet is swapped unless the one before it was already waiting: p / (1 + p).
    expect(swaps / 5000).toBeGreaterThan(0.075);
    expect(swaps / 5000).toBeLessThan(0.107);
  });

  it('drops as overflow what exceeds its bound of held packets and bytes, and never holds more', () => {
    const link = new DatagramLink(
      new ImpairmentDice(1, 'upstream'),
      { ...NO_IMPAIRMENT, delayMs: 10_000 },
      { maxInFlightPackets: 50, maxInFlightBytes: 4000 },
    );
    const random = new SeededRandom(11);
    for (let i = 0; i < 1000; i++) {
      link.push(Buffer.alloc(1 + Math.floor(random.next() * 200)), { deliver: () => true });
    }
    const stats = link.stats();
    expect(stats.peakInFlightPackets).toBeLessThanOrEqual(50);
    expect(stats.peakInFlightBytes).toBeLessThanOrEqual(4000);
    expect(stats.dropped.overflow).toBeGreaterThan(900);
    expect(stats.inFlightPackets + totalDropped(stats)).toBe(1000);
    link.close();
    expect(link.stats()).toMatchObject({ inFlightPackets: 0, inFlightBytes: 0 });
    expect(link.stats().dropped.closed).toBe(stats.inFlightPackets);
  });

  it('update() to a blackout drops the packets it holds, and counts a delivery to a closed session', () => {
    const { link, delivered, discarded, push } = linkWith({ delayMs: 10_000 });
    for (let sequence = 0; sequence < 20; sequence++) push(sequence);
    expect(link.stats().inFlightPackets).toBe(20);
    link.update({ ...NO_IMPAIRMENT, blackout: true });
    expect(link.stats()).toMatchObject({ inFlightPackets: 0, packetsForwarded: 0 });
    expect(link.stats().dropped.blackout).toBe(20);
    expect(discarded.sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
    link.update({ ...NO_IMPAIRMENT });
    link.push(Buffer.alloc(10), { deliver: () => false });
    push(99);
    expect(delivered).toEqual([99]);
    expect(link.stats().dropped.closed).toBe(1);
  });
});

describe('applyPatch', () => {
  const none = { upstream: NO_IMPAIRMENT, downstream: NO_IMPAIRMENT };

  it('applies top-level fields to both directions, then per-direction overrides', () => {
    const next = applyPatch(none, { lossPercent: 5, downstream: { lossPercent: 7, delayMs: 30 } });
    expect(next.upstream).toEqual({ ...NO_IMPAIRMENT, lossPercent: 5 });
    expect(next.downstream).toEqual({ ...NO_IMPAIRMENT, lossPercent: 7, delayMs: 30 });
  });

  it('applying a profile sets every field, whatever was set before', () => {
    const impaired = applyPatch(none, { jitterMs: 40, blackout: true, reorderPercent: 5 });
    expect(applyPatch(impaired, IMPAIRMENT_PROFILES['3g'])).toEqual({
      upstream: IMPAIRMENT_PROFILES['3g'],
      downstream: IMPAIRMENT_PROFILES['3g'],
    });
    expect(IMPAIRMENT_PROFILES['2g']).toMatchObject({
      lossPercent: 10,
      delayMs: 200,
      rateKbps: 256,
    });
    expect(IMPAIRMENT_PROFILES['3g']).toMatchObject({
      lossPercent: 3,
      delayMs: 100,
      rateKbps: 1000,
    });
  });

  it('throws on an out-of-range or unknown field, naming it', () => {
    expect(() => applyPatch(none, { lossPercent: 101 })).toThrow(/upstream.lossPercent/);
    expect(() => applyPatch(none, { downstream: { rateKbps: 0 } })).toThrow(/downstream.rateKbps/);
    expect(() =>
      applyPatch(none, { burstLoss: { goodToBad: 2, badToGood: 0.5, lossInBad: 1 } }),
    ).toThrow(/burstLoss.goodToBad/);
    expect(() => applyPatch(none, { lossPercnt: 5 } as never)).toThrow(/lossPercnt/);
  });
});
