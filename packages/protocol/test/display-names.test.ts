import { describe, expect, it } from 'vitest';
import { displayNameSchema, displayNameSkeleton, normalizeDisplayName } from '@hearth/protocol';

describe('display names', () => {
  it('are stored in NFC, without zero-width or bidi control characters, single-spaced', () => {
    expect(normalizeDisplayName('Cafe\u0301')).toBe('Café');
    expect(normalizeDisplayName('  Ad\u200Ba \u202Eevil\u202C  ')).toBe('Ada evil');
    expect(displayNameSchema.parse('\u2066Bob\u2069   Smith')).toBe('Bob Smith');
  });

  it('made only of invisible characters, or with other format or control characters, are refused', () => {
    expect(displayNameSchema.safeParse('\u200B\u200D\u2060').success).toBe(false);
    expect(displayNameSchema.safeParse('a\u0000b').success).toBe(false);
    expect(displayNameSchema.safeParse('a\uFFF9b').success).toBe(false);
  });

  it('that read alike share a skeleton; different names do not', () => {
    const alice = displayNameSkeleton('Alice');
    for (const lookAlike of [
      'alice',
      'ALICE',
      'Аlice',
      'A1ice',
      'A l i c e',
      'Alicé',
      'Al\u200Dice',
    ]) {
      expect(displayNameSkeleton(lookAlike)).toBe(alice);
    }
    expect(displayNameSkeleton('rnorgan')).toBe(displayNameSkeleton('morgan'));
    expect(displayNameSkeleton('Alicia')).not.toBe(alice);
  });
});
