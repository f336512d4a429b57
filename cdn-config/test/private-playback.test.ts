import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signedChannelPath, signedString, storagePrefixOf } from '../src/private-playback';

const SECRET = 'AbC123'.repeat(6);

describe('private playback paths', () => {
  it('storagePrefixOf() puts private channels under private/ and public ones under live/', () => {
    expect(storagePrefixOf('club', true)).toBe('private/club');
    expect(storagePrefixOf('club', false)).toBe('live/club');
  });

  it('signedChannelPath() signs expiry, private prefix and secret as nginx secure_link_md5 reads it', () => {
    const path = signedChannelPath({
      channel: 'club',
      expiresAtSeconds: 1_900_000_000,
      secret: SECRET,
    });

    // nginx decodes the signature as base64url without padding and compares it with the MD5 of
    // the secure_link_md5 string: "<expires>:private/<channel>:<secret>".
    const expected = createHash('md5')
      .update(`1900000000:private/club:${SECRET}`)
      .digest('base64url');
    expect(signedString('club', 1_900_000_000, SECRET)).toBe(`1900000000:private/club:${SECRET}`);
    expect(path).toBe(`/live/_s/${expected}/1900000000/club`);
    expect(expected).toHaveLength(22);
  });

  it('signedChannelPath() with a bad secret, channel or expiry throws a TypeError without the secret', () => {
    const bad = 'not a secret!';
    expect(() => signedChannelPath({ channel: 'club', expiresAtSeconds: 1, secret: bad })).toThrow(
      TypeError,
    );
    expect(() =>
      signedChannelPath({ channel: 'club', expiresAtSeconds: 1, secret: bad }),
    ).not.toThrow(/not a secret/);
    expect(() =>
      signedChannelPath({ channel: '../x', expiresAtSeconds: 1, secret: SECRET }),
    ).toThrow(TypeError);
    expect(() =>
      signedChannelPath({ channel: 'club', expiresAtSeconds: 1.5, secret: SECRET }),
    ).toThrow(TypeError);
  });
});
