import { describe, expect, it } from 'vitest';
import { InMemoryReservationStore, JoinReservations } from '../src/voice/reservations';

function reservations() {
  const released: string[] = [];
  const seats = new JoinReservations({
    store: new InMemoryReservationStore(),
    releaseSeat: async (nodeId) => {
      released.push(nodeId);
    },
  });
  return { seats, released };
}

const hold = (seats: JoinReservations, id: string, expiresInMs: number, max = 3) =>
  seats.hold({
    id,
    identity: 'guest:a',
    nodeId: 'node-1',
    expiresAt: Date.now() + expiresInMs,
    max,
  });

describe('JoinReservations', () => {
  it('an abandoned join gives its seat back when its token expires, once', async () => {
    const { seats, released } = reservations();
    expect(await hold(seats, 'r1', 50)).toBe(true);
    expect(released).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(released).toEqual(['node-1']);
    await seats.settle('r1');
    expect(released).toEqual(['node-1']);
    await seats.close();
  });

  it('an admitted token gives its seat back at once, and its expiry later does nothing', async () => {
    const { seats, released } = reservations();
    await hold(seats, 'r1', 50);
    await seats.settle('r1');
    expect(released).toEqual(['node-1']);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(released).toEqual(['node-1']);
    await seats.close();
  });

  it('an identity holds at most `max` live reservations; expired ones stop counting', async () => {
    const { seats } = reservations();
    expect(await hold(seats, 'r1', 60_000, 2)).toBe(true);
    expect(await hold(seats, 'r2', 40, 2)).toBe(true);
    expect(await hold(seats, 'r3', 60_000, 2)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await hold(seats, 'r3', 60_000, 2)).toBe(true);
    await seats.close();
  });
});
