import { describe, expect, it } from 'vitest';
import { secretMatches } from '../src/secrets';

describe('secretMatches()', () => {
  const secret = 'an_edge_secret_of_forty_characters_0123';

  it('accepts the secret itself only', () => {
    expect(secretMatches(secret, secret)).toBe(true);
    expect(secretMatches(`${secret} `, secret)).toBe(false);
    expect(secretMatches(secret.slice(0, -1), secret)).toBe(false);
    expect(secretMatches(secret.toUpperCase(), secret)).toBe(false);
  });

  it('refuses nothing presented, an empty string, and a much longer string', () => {
    expect(secretMatches(undefined, secret)).toBe(false);
    expect(secretMatches('', secret)).toBe(false);
    expect(secretMatches(secret.repeat(1000), secret)).toBe(false);
  });
});
