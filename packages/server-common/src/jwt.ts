import { createHmac, timingSafeEqual } from 'node:crypto';
/** Why a token was refused: only `expired` is worth telling a client apart from the rest. */
export class JwtRefusedError extends Error {
  /** `expired` for a token that is valid but too old, `invalid` for everything else. */
  readonly reason: 'expired' | 'invalid';

  constructor(reason: 'expired' | 'invalid') {
    super(reason === 'expired' ? 'token expired' : 'invalid token');
    this.name = 'JwtRefusedError';
    this.reason = reason;
  }
}

/** Registered claims every token carries; what `verify` has checked before returning. */
export interface VerifiedClaims {
  /** Subject. */
  sub: string;
  /** Issued at, seconds since the epoch. */
  iat: number;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Every other claim, unchecked: the caller parses them with its schema. */
  [claim: string]: unknown;
}

// Every token this platform signs has this header.
const HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

/**
 * Compact JWTs signed with HMAC-SHA256 (RFC 7519), for tokens this platform both issues and checks:
 * one fixed algorithm, one issuer and audience per kind of token, expiry always set. Signing and
 * checking are synchronous HMACs from OpenSSL through node:crypto, with the signature compared in
 * constant time; tokens are checked on every request and join, so they cost microseconds.
 */
export class Hs256Jwt {
  readonly #key: Buffer;
  readonly #issuer: string;
  readonly #audience: string;

  constructor(secret: string, options: { issuer: string; audience: string }) {
    this.#key = Buffer.from(secret, 'utf8');
    this.#issuer = options.issuer;
    this.#audience = options.audience;
  }

  /** Signs these claims for `subject`, valid for `ttlSeconds` from now. */
  sign(claims: Record<string, unknown>, subject: string, ttlSeconds: number): string {
    const now = Math.floor(Date.now() / 1000);
    const payload = base64url(
      JSON.stringify({
        ...claims,
        sub: subject,
        iss: this.#issuer,
        aud: this.#audience,
        iat: now,
        exp: now + ttlSeconds,
      }),
    );
    const signingInput = `${HEADER}.${payload}`;
    return `${signingInput}.${this.#mac(signingInput).toString('base64url')}`;
  }

  /** Checks the header, signature, issuer, audience and lifetime; throws JwtRefusedError. */
  verify(token: string): VerifiedClaims {
    const parts = token.split('.');
    if (parts.length !== 3 || !acceptableHeader(parts[0]!)) throw new JwtRefusedError('invalid');
    const [header, payload, signature] = parts as [string, string, string];
    const expected = this.#mac(`${header}.${payload}`);
    const presented = Buffer.from(signature, 'base64url');
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new JwtRefusedError('invalid');
    }
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
    } catch {
      throw new JwtRefusedError('invalid');
    }
    if (
      claims === null ||
      typeof claims !== 'object' ||
      claims.iss !== this.#issuer ||
      claims.aud !== this.#audience ||
      typeof claims.sub !== 'string' ||
      typeof claims.iat !== 'number' ||
      typeof claims.exp !== 'number'
    ) {
      throw new JwtRefusedError('invalid');
    }
    if (claims.exp <= Date.now() / 1000) throw new JwtRefusedError('expired');
    return claims as VerifiedClaims;
  }

  #mac(signingInput: string): Buffer {
    return createHmac('sha256', this.#key).update(signingInput).digest();
  }
}

// Only HS256 is accepted, whatever else a header says, so there is no algorithm to negotiate or
// confuse; a header with critical extensions this code does not know is refused (RFC 7515 4.1.11).
function acceptableHeader(encoded: string): boolean {
  if (encoded === HEADER) return true;
  try {
    const header = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) as unknown;
    if (header === null || typeof header !== 'object') return false;
    const { alg, typ, crit } = header as Record<string, unknown>;
    return alg === 'HS256' && (typ === undefined || typ === 'JWT') && crit === undefined;
  } catch {
    return false;
  }
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
