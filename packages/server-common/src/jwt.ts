import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign as signBytes,
  timingSafeEqual,
  verify as verifyBytes,
  type KeyObject,
} from 'node:crypto';

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

/**
 * The one algorithm a kind of token is signed with, and its key: HMAC-SHA256 with a shared
 * secret, or Ed25519 where the checking side must not be able to sign.
 */
export interface JwtKey {
  /** The JOSE name of the algorithm: `HS256` or `EdDSA`. */
  readonly alg: 'HS256' | 'EdDSA';
  /** Signs the signing input; absent on a key that only verifies. */
  readonly sign?: (input: Buffer) => Buffer;
  /** Checks a signature over the signing input. */
  readonly verify: (input: Buffer, signature: Buffer) => boolean;
}

/** An HMAC-SHA256 key: whoever checks these tokens can also make them. */
export function hs256Key(secret: string): JwtKey {
  const key = Buffer.from(secret, 'utf8');
  const mac = (input: Buffer) => createHmac('sha256', key).update(input).digest();
  return {
    alg: 'HS256',
    sign: mac,
    verify: (input, signature) => {
      const expected = mac(input);
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    },
  };
}

// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410), so node:crypto can load it.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** An Ed25519 key pair from a 32-byte seed: it signs, and its public half is `publicKeyOf`. */
export function ed25519SigningKey(seed: Buffer): JwtKey & { readonly publicKey: KeyObject } {
  if (seed.length !== 32) throw new Error('an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = createPublicKey(privateKey);
  return {
    alg: 'EdDSA',
    publicKey,
    sign: (input) => signBytes(null, input, privateKey),
    verify: (input, signature) => verifyBytes(null, input, publicKey, signature),
  };
}

/** The raw Ed25519 public key, base64url, as it travels to the nodes that check tokens. */
export function publicKeyText(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new Error('not an Ed25519 public key');
  }
  return jwk.x;
}

/** A verify-only Ed25519 key from its base64url text; throws on anything else. */
export function ed25519VerifyingKey(text: string): JwtKey {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) throw new Error('not an Ed25519 public key');
  const publicKey = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: text },
    format: 'jwk',
  });
  return {
    alg: 'EdDSA',
    verify: (input, signature) =>
      signature.length === 64 && verifyBytes(null, input, publicKey, signature),
  };
}

/**
 * Compact JWTs (RFC 7519) for tokens this platform both issues and checks: one fixed algorithm
 * per kind of token, one issuer and audience, expiry always set. Signing and checking are
 * synchronous node:crypto calls (HMACs are compared in constant time); tokens are checked on
 * every request and join, so they cost microseconds.
 */
export class CompactJwt {
  readonly #key: JwtKey;
  readonly #header: string;
  readonly #issuer: string;
  readonly #audience: string;

  constructor(key: JwtKey, options: { issuer: string; audience: string }) {
    this.#key = key;
    this.#header = base64url(JSON.stringify({ alg: key.alg, typ: 'JWT' }));
    this.#issuer = options.issuer;
    this.#audience = options.audience;
  }

  /** Signs these claims for `subject`, valid for `ttlSeconds` from now; throws on a verify-only key. */
  sign(claims: Record<string, unknown>, subject: string, ttlSeconds: number): string {
    if (!this.#key.sign) throw new Error('this key only verifies tokens');
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
    const signingInput = `${this.#header}.${payload}`;
    const signature = this.#key.sign(Buffer.from(signingInput));
    return `${signingInput}.${signature.toString('base64url')}`;
  }

  /** Checks the header, signature, issuer, audience and lifetime; throws JwtRefusedError. */
  verify(token: string): VerifiedClaims {
    const parts = token.split('.');
    if (parts.length !== 3 || !this.#acceptableHeader(parts[0]!)) {
      throw new JwtRefusedError('invalid');
    }
    const [header, payload, signature] = parts as [string, string, string];
    if (
      !this.#key.verify(Buffer.from(`${header}.${payload}`), Buffer.from(signature, 'base64url'))
    ) {
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

  // Only the key's algorithm is accepted, whatever else a header says, so there is no algorithm
  // to negotiate or confuse; a header with critical extensions this code does not know is refused
  // (RFC 7515 4.1.11).
  #acceptableHeader(encoded: string): boolean {
    if (encoded === this.#header) return true;
    try {
      const header = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) as unknown;
      if (header === null || typeof header !== 'object') return false;
      const { alg, typ, crit } = header as Record<string, unknown>;
      return alg === this.#key.alg && (typ === undefined || typ === 'JWT') && crit === undefined;
    } catch {
      return false;
    }
  }
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
