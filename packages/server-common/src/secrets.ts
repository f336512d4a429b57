import { createHash, timingSafeEqual } from 'node:crypto';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * Whether a presented secret is the expected one, compared in constant time: both are hashed
 * first, so the comparison takes as long whatever was presented, its length included.
 */
export function secretMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(sha256(presented), sha256(expected));
}
