import { joinTokenClaimsSchema, describeZodError, type JoinTokenClaims } from '@hearth/protocol';
import { AppError } from './errors';
import { Hs256Jwt, JwtRefusedError } from './hs256-jwt';

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
  readonly #jwt: Hs256Jwt;
  readonly #ttlSeconds: number;

  constructor(clusterSecret: string, ttlSeconds = 60) {
    if (clusterSecret.length < MIN_CLUSTER_SECRET_LENGTH) {
      throw new Error(
        `the cluster secret must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters`,
      );
    }
    this.#jwt = new Hs256Jwt(clusterSecret, { issuer: ISSUER, audience: AUDIENCE });
    this.#ttlSeconds = ttlSeconds;
  }

  /** Issues a token for these claims, valid for the configured lifetime. */
  sign(claims: JoinTokenClaims): string {
    const { sub, ...rest } = joinTokenClaimsSchema.parse(claims);
    return this.#jwt.sign(rest, sub, this.#ttlSeconds);
  }

  /** Checks signature, lifetime and shape; throws `unauthorized` otherwise. */
  verify(token: string): JoinTokenClaims {
    let claims: unknown;
    try {
      claims = this.#jwt.verify(token);
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
    return parsed.data;
  }
}
