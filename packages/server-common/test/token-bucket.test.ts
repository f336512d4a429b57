import { describe, expect, it } from 'vitest';
import { KeyedRateLimiter, TokenBucket } from '../src/token-bucket';

describe('TokenBucket', () => {
  it('take() allows the burst at once, then the sustained rate', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 4, () => now);
    expect(Array.from({ length: 5 }, () => bucket.take())).toEqual([true, true, true, true, false]);
    now = 500;
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
  });
});

describe('KeyedRateLimiter', () => {
  it('keeps one bucket per key', () => {
    const limiter = new KeyedRateLimiter({ ratePerSecond: 1, burst: 1, now: () => 0 });
    expect([limiter.take('a'), limiter.take('a'), limiter.take('b')]).toEqual([true, false, true]);
  });

  it('past maxKeys it forgets the least recently used bucket only: an abuser that keeps knocking stays limited while 10,000 other addresses pass', () => {
    const limiter = new KeyedRateLimiter({
      ratePerSecond: 1,
      burst: 1,
      maxKeys: 100,
      now: () => 0,
    });
    expect(limiter.take('abuser')).toBe(true);
    for (let index = 0; index < 10_000; index++) {
      limiter.take(`203.0.113.${index}`);
      // The abuser keeps trying in between and is refused every time.
      if (index % 50 === 0) expect(limiter.take('abuser')).toBe(false);
    }
    expect(limiter.take('abuser')).toBe(false);
    expect(limiter.size).toBe(100);
  });
});
