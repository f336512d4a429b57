import { hkdfSync, randomUUID } from 'node:crypto';
import {
  joinTokenClaimsSchema,
  describeZodError,
  type JoinTokenClaims,
  type JoinTokenClaimsInput,
} from '@hearth/protocol';
import { AppError } from './errors';
import {
  CompactJwt,
  JwtRefusedError,
  ed25519SigningKey,
  ed25519VerifyingKey,
  publicKeyText,
} from './jwt';

const ISSUER = 'hearth-api';
const AUDIENCE = 'hearth-voice';

/** Shortest cluster secret accepted: 32 bytes of entropy as text. */
export const MIN_CLUSTER_SECRET_LENGTH = 32;

/** Token ids a node remembers at most; past it, new tokens are refused until old ones expire. */
export const MAX_REMEMBERED_JOIN_TOKENS = 100_000;

/** A signed join token with the id and expiry the api tracks its reservation by. */
export interface IssuedJoinToken {
  /** The compact JWT the client presents to the node. */
  readonly token: string;
  /** Its `jti`: a node admits it once. */
  readonly id: string;
  /** When it expires, in milliseconds since the epoch. */
  readonly expiresAt: number;
}

/**
 * Signs the short-lived tokens a client presents to a voice node, with Ed25519: the api holds the
 * private key, nodes receive only the public key when they register, so no node can mint a token.
 * The key is derived from the api's own secret, so every api instance signs with the same key.
 */
export class JoinTokenIssuer {
  readonly #jwt: CompactJwt;
  readonly #ttlSeconds: number;
  /** The public key nodes check tokens with, base64url. */
  readonly publicKey: string;

  constructor(apiSecret: string, ttlSeconds = 60) {
    if (apiSecret.length < MIN_CLUSTER_SECRET_LENGTH) {
      throw new Error(
        `the signing secret must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters`,
      );
    }
    const seed = Buffer.from(hkdfSync('sha256', apiSecret, '', 'hearth voice join tokens', 32));
    const key = ed25519SigningKey(seed);
    this.#jwt = new CompactJwt(key, { issuer: ISSUER, audience: AUDIENCE });
    this.#ttlSeconds = ttlSeconds;
    this.publicKey = publicKeyText(key.publicKey);
  }

  /** Lifetime of the tokens it issues, in seconds. */
  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /** Issues a single-use token for these claims, valid for the configured lifetime. */
  sign(claims: Omit<JoinTokenClaimsInput, 'jti'>, id: string = randomUUID()): IssuedJoinToken {
    const { sub, ...rest } = joinTokenClaimsSchema.parse({ ...claims, jti: id });
    const token = this.#jwt.sign(rest, sub, this.#ttlSeconds);
    return { token, id, expiresAt: Date.now() + this.#ttlSeconds * 1000 };
  }
}

/**
 * Checks join tokens on a voice node: the signature against the api's public key, the lifetime
 * and shape, and that the token was not admitted before. Token ids are remembered until they
 * expire, so a token opens one session only.
 */
export class JoinTokenVerifier {
  #jwt: CompactJwt | undefined;
  // Token id -> expiry (ms). Tokens all live about as long, so insertion order is nearly expiry
  // order: pruning stops at the first live one, and one that outlives its turn is dropped later.
  readonly #admitted = new Map<string, number>();
  readonly #maxRemembered: number;

  constructor(options: { publicKey?: string; maxRemembered?: number } = {}) {
    this.#maxRemembered = options.maxRemembered ?? MAX_REMEMBERED_JOIN_TOKENS;
    if (options.publicKey !== undefined) this.trust(options.publicKey);
  }

  /** Trusts tokens signed by this public key (base64url Ed25519) from now on. */
  trust(publicKey: string): void {
    this.#jwt = new CompactJwt(ed25519VerifyingKey(publicKey), {
      issuer: ISSUER,
      audience: AUDIENCE,
    });
  }

  /**
   * Checks a token and uses it up; `unauthorized` when it is bad, expired or already used, and
   * `unavailable` before the api's key is known or while too many live tokens are remembered.
   */
  admit(token: string): JoinTokenClaims {
    if (!this.#jwt) throw new AppError('unavailable', 'this node has not registered yet');
    let verified: { exp: number };
    let claims: unknown;
    try {
      claims = verified = this.#jwt.verify(token);
    } catch (error) {
      if (!(error instanceof JwtRefusedError)) throw error;
      throw new AppError(
        'unauthorized',
        error.reason === 'expired' ? 'join token expired' : 'invalid join token',
      );
    }
    const parsed = joinTokenClaimsSchema.safeParse(claims);
    if (!parsed.success) {
      throw new AppError('unauthorized', `invalid join token: ${describeZodError(parsed.error)}`);
    }
    this.#forgetExpired();
    if (this.#admitted.has(parsed.data.jti)) {
      throw new AppError('unauthorized', 'join token already used; ask the api for a new one');
    }
    if (this.#admitted.size >= this.#maxRemembered) {
      throw new AppError('unavailable', 'too many joins at once; try again shortly');
    }
    this.#admitted.set(parsed.data.jti, verified.exp * 1000);
    return parsed.data;
  }

  #forgetExpired(): void {
    const now = Date.now();
    for (const [id, expiresAt] of this.#admitted) {
      if (expiresAt > now) return;
      this.#admitted.delete(id);
    }
  }
}
