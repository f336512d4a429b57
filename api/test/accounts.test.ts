import { describe, expect, it } from 'vitest';
import { AccessTokens } from '../src/accounts/access-tokens';
import { hashPassword, verifyPassword } from '../src/accounts/passwords';
import {
  ALL_GRANTS,
  createPrincipal,
  grantsIn,
  holdsGrant,
  identityIn,
  rankIn,
  roleIn,
} from '../src/auth';

const SECRET = 'unit-test-secret-that-is-long-enough-12345';

describe('password hashing', () => {
  it('hashPassword() stores scrypt parameters and a fresh salt; verifyPassword() accepts only that password', async () => {
    const first = await hashPassword('hunter2hunter2');
    const second = await hashPassword('hunter2hunter2');
    expect(first).toMatch(/^scrypt\$15\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(first).not.toBe(second);
    expect(await verifyPassword('hunter2hunter2', first)).toBe(true);
    expect(await verifyPassword('hunter2hunter3', first)).toBe(false);
    expect(await verifyPassword('', first)).toBe(false);
  });

  it('verifyPassword() treats a composed and a decomposed accent as the same password', async () => {
    const stored = await hashPassword('caf\u00e9-password');
    expect(await verifyPassword('cafe\u0301-password', stored)).toBe(true);
  });

  it.each([
    ['not a hash'],
    ['scrypt$15$8$1$c2FsdA==$'],
    ['scrypt$40$8$1$c2FsdHNhbHRzYWx0c2FsdA==$' + 'A'.repeat(43) + '='],
    ['bcrypt$10$abc'],
  ])('verifyPassword() never matches the malformed or out-of-bounds hash %j', async (stored) => {
    expect(await verifyPassword('anything at all', stored)).toBe(false);
  });
});

describe('principals', () => {
  const principal = createPrincipal({
    userId: 'u1',
    displayName: 'Ada',
    baseRole: 'member',
    serverGrants: ['join', 'speak'],
    channelGrants: [
      ['studio', ['stream', 'join']],
      ['lobby', ['join']],
    ],
  });

  it('createPrincipal() keeps only the channel grants that add to the server-wide ones', () => {
    expect([...principal.channelGrants.keys()]).toEqual(['studio']);
    expect([...principal.channelGrants.get('studio')!]).toEqual(['stream']);
    expect(principal.admin).toBe(false);
  });

  it('holdsGrant() and grantsIn() combine server-wide and channel grants; * means server-wide only', () => {
    expect(holdsGrant(principal, 'stream', 'studio')).toBe(true);
    expect(holdsGrant(principal, 'stream', 'lobby')).toBe(false);
    expect(holdsGrant(principal, 'stream')).toBe(false);
    expect(holdsGrant(principal, 'join')).toBe(true);
    expect([...grantsIn(principal, '*')]).toEqual(['join', 'speak']);
  });

  it('identityIn() gives the grants that apply in the channel being accessed', () => {
    expect(identityIn(principal, 'studio')).toEqual({
      userId: 'u1',
      displayName: 'Ada',
      guest: false,
      grants: new Set(['join', 'speak', 'stream']),
      rank: 1,
    });
    expect(identityIn(principal, 'lobby').grants).toEqual(new Set(['join', 'speak']));
  });

  it('createPrincipal() gives admins every grant, and moderate in a channel makes a moderator there', () => {
    const admin = createPrincipal({
      userId: 'u2',
      displayName: 'Root',
      baseRole: 'admin',
      serverGrants: ['join'],
    });
    expect(admin.admin).toBe(true);
    expect(admin.serverGrants).toEqual(new Set(ALL_GRANTS));
    const channelModerator = createPrincipal({
      userId: 'u3',
      displayName: 'Mo',
      baseRole: 'member',
      serverGrants: ['join'],
      channelGrants: [['studio', ['moderate']]],
    });
    expect(roleIn(channelModerator, 'studio')).toBe('moderator');
    expect(roleIn(channelModerator)).toBe('member');
    expect(rankIn(channelModerator, 'studio')).toBeGreaterThan(rankIn(channelModerator));
  });
});

const tokenOptions = (secret: string, guestAccess = true) => ({
  secret,
  ttlSeconds: 60,
  guestAccess,
  guestGrants: ['join', 'speak'] as const,
});

describe('AccessTokens', () => {
  it('a guest session token resolves to a guest with the configured guest grants only', () => {
    const tokens = new AccessTokens(tokenOptions(SECRET));
    const { token, userId } = tokens.signGuest('Bo');
    const guest = tokens.verify(token);
    expect(guest).toMatchObject({ userId, displayName: 'Bo', guest: true, admin: false });
    expect(guest.serverGrants).toEqual(new Set(['join', 'speak']));
    expect(() => new AccessTokens(tokenOptions(SECRET, false)).verify(token)).toThrow(
      expect.objectContaining({ code: 'unauthorized', message: 'guest access is disabled' }),
    );
  });

  const account = createPrincipal({
    userId: '0b8e6bde-9f37-4d3c-9f43-2ad4f4c5c9a1',
    displayName: 'Ada',
    baseRole: 'member',
    serverGrants: ['join'],
    channelGrants: [['studio', ['stream']]],
  });

  it('verify() of a signed token gives back the principal', async () => {
    const tokens = new AccessTokens(tokenOptions(SECRET));
    const verified = await tokens.verify(await tokens.sign(account));
    expect(verified).toEqual(account);
  });

  it('verify() refuses a token of another secret and a garbled one with unauthorized', async () => {
    const token = new AccessTokens(tokenOptions(`${SECRET}-other`)).sign(account);
    const tokens = new AccessTokens(tokenOptions(SECRET));
    expect(() => tokens.verify(token)).toThrow(
      expect.objectContaining({ code: 'unauthorized', message: 'invalid token' }),
    );
    expect(() => tokens.verify('a.b.c')).toThrow(
      expect.objectContaining({ code: 'unauthorized', message: 'invalid token' }),
    );
  });

  it('the constructor refuses a secret shorter than 32 characters', () => {
    expect(() => new AccessTokens(tokenOptions('short'))).toThrow(/at least 32/);
  });
});
