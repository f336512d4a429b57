import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CompactJwt,
  JwtRefusedError,
  ed25519SigningKey,
  ed25519VerifyingKey,
  hs256Key,
  publicKeyText,
} from '@hearth/server-common';

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';
const jwt = new CompactJwt(hs256Key(SECRET), { issuer: 'issuer-a', audience: 'audience-a' });

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

describe('CompactJwt with HS256', () => {
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

describe('CompactJwt with Ed25519', () => {
  const options = { issuer: 'issuer-a', audience: 'audience-a' };
  const signingKey = ed25519SigningKey(Buffer.alloc(32, 7));
  const signer = new CompactJwt(signingKey, options);
  const verifier = new CompactJwt(
    ed25519VerifyingKey(publicKeyText(signingKey.publicKey)),
    options,
  );

  it('a verify-only key checks what the private key signed, and cannot sign', () => {
    expect(verifier.verify(signer.sign({ role: 'x' }, 'user-1', 60)).role).toBe('x');
    expect(() => verifier.sign({}, 'user-1', 60)).toThrow(/only verifies/);
  });

  it('refuses another key, an HS256 token, and a changed payload', () => {
    const other = new CompactJwt(ed25519SigningKey(Buffer.alloc(32, 8)), options);
    expect(() => verifier.verify(other.sign({}, 'user-1', 60))).toThrow(JwtRefusedError);
    expect(() => verifier.verify(jwt.sign({}, 'user-1', 60))).toThrow(JwtRefusedError);
    const [header, , signature] = signer.sign({ role: 'x' }, 'user-1', 60).split('.');
    const forged = `${header}.${encode({ ...validClaims(), role: 'admin' })}.${signature}`;
    expect(() => verifier.verify(forged)).toThrow(JwtRefusedError);
  });

  it('ed25519VerifyingKey() refuses text that is not a raw public key', () => {
    expect(() => ed25519VerifyingKey('not a key')).toThrow(/not an Ed25519 public key/);
  });
});
