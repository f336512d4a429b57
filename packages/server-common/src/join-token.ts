import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { joinTokenClaimsSchema, describeZodError, type JoinTokenClaims } from '@hearth/protocol';
import { AppError } from './errors';

const ISSUER = 'hearth-api';
const AUDIENCE = 'hearth-voice';

/** Shortest cluster secret accepted: 32 bytes of entropy as text. */
export const MIN_CLUSTER_SECRET_LENGTH = 32;

/**
 * Signs and checks the short-lived tokens a client presents to a voice-sfu node. The api signs
 * them after checking the caller's grants and placing the channel; nodes only verify them, with
 * the cluster secret they share with the api (HS256).
 */
export class JoinTokens {
  readonly #key: Uint8Array;
  readonly #ttlSeconds: number;

  constructor(clusterSecret: string, ttlSeconds = 60) {
    if (clusterSecret.length < MIN_CLUSTER_SECRET_LENGTH) {
      throw new Error(
        `the cluster secret must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters`,
      );
    }
    this.#key = new TextEncoder().encode(clusterSecret);
    this.#ttlSeconds = ttlSeconds;
  }

  /** Issues a token for these claims, valid for the configured lifetime. */
  async sign(claims: JoinTokenClaims): Promise<string> {
    const { sub, ...rest } = joinTokenClaimsSchema.parse(claims);
    return new SignJWT(rest)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${this.#ttlSeconds}s`)
      .sign(this.#key);
  }

  /** Checks signature, lifetime and shape; throws `unauthorized` otherwise. */
  async verify(token: string): Promise<JoinTokenClaims> {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['HS256'],
      }));
    } catch (error) {
      const expired = error instanceof joseErrors.JWTExpired;
      throw new AppError('unauthorized', expired ? 'join token expired' : 'invalid join token');
    }
    const parsed = joinTokenClaimsSchema.safeParse(payload);
    if (!parsed.success) {
      throw new AppError('unauthorized', `invalid join token: ${describeZodError(parsed.error)}`);
    }
    return parsed.data;
  }
}
