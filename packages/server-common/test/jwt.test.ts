import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Hs256Jwt, JwtRefusedError } from '@hearth/server-common';

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';
const jwt = new Hs256Jwt(SECRET, { issuer: 'issuer-a', audience: 'audience-a' });

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

// Builds a token by hand, so the checks are tested against tokens this class did not make.
function handMade(header: unknown, claims: unknown, secret = SECRET): string {
  const input = `${encode(header)}.${encode(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const validClaims = () => ({
  sub: 'user-1',
  iss: 'issuer-a',
  aud: 'audience-a',
  iat: now(),
  exp: now() + 60,
  role: 'x',
});

function refusal(token: string): string {
  try {
    jwt.verify(token);
  } catch (error) {
    expect(error).toBeInstanceOf(JwtRefusedError);
    return (error as JwtRefusedError).reason;
  }
  throw new Error('the token was accepted');
}

describe('Hs256Jwt', () => {
  it('verifies what it signed and returns the claims', () => {
    const token = jwt.sign({ role: 'x' }, 'user-1', 60);
    expect(jwt.verify(token)).toMatchObject({
      sub: 'user-1',
      role: 'x',
      iss: 'issuer-a',
      aud: 'audience-a',
    });
  });

  it('accepts a hand-made HS256 token with or without typ', () => {
    expect(jwt.verify(handMade({ alg: 'HS256' }, validClaims())).role).toBe('x');
    expect(jwt.verify(handMade({ alg: 'HS256', typ: 'JWT' }, validClaims())).sub).toBe('user-1');
  });

  it('refuses another secret, a changed payload, and a cut signature', () => {
    expect(refusal(handMade({ alg: 'HS256' }, validClaims(), `${SECRET}x`))).toBe('invalid');
    const [header, , signature] = jwt.sign({ role: 'x' }, 'user-1', 60).split('.');
    expect(refusal(`${header}.${encode({ ...validClaims(), role: 'admin' })}.${signature}`)).toBe(
      'invalid',
    );
    const token = jwt.sign({}, 'user-1', 60);
    expect(refusal(token.slice(0, -3))).toBe('invalid');
  });

  it('refuses alg none, other algorithms and critical extensions', () => {
    const unsigned = `${encode({ alg: 'none' })}.${encode(validClaims())}.`;
    expect(refusal(unsigned)).toBe('invalid');
    expect(refusal(handMade({ alg: 'HS512' }, validClaims()))).toBe('invalid');
    expect(refusal(handMade({ alg: 'HS256', crit: ['exp'] }, validClaims()))).toBe('invalid');
  });

  it('refuses another issuer or audience, missing claims, and garbage', () => {
    expect(refusal(handMade({ alg: 'HS256' }, { ...validClaims(), iss: 'other' }))).toBe('invalid');
    expect(refusal(handMade({ alg: 'HS256' }, { ...validClaims(), aud: 'other' }))).toBe('invalid');
    const withoutExpiry: Record<string, unknown> = validClaims();
    delete withoutExpiry.exp;
    expect(refusal(handMade({ alg: 'HS256' }, withoutExpiry))).toBe('invalid');
    expect(refusal('not.a.token')).toBe('invalid');
    expect(refusal('')).toBe('invalid');
  });

  it('says "expired" for an expired token that is otherwise valid', () => {
    expect(refusal(handMade({ alg: 'HS256' }, { ...validClaims(), exp: now() - 1 }))).toBe(
      'expired',
    );
  });
});
