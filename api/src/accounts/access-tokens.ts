import { z } from 'zod';
import { describeZodError, grantSchema } from '@hearth/protocol';
import { AppError, Hs256Jwt, JwtRefusedError } from '@hearth/server-common';
import { createPrincipal, type Principal } from '../auth';

const ISSUER = 'hearth-api';
const AUDIENCE = 'hearth-api';

/** Shortest signing secret accepted: 32 characters. */
export const MIN_JWT_SECRET_LENGTH = 32;

// What an access token says about its account beyond the registered claims: its display name and
// its grants at the time it was issued. Grant changes therefore apply at the next refresh.
const accessClaimsSchema = z.object({
  sub: z.uuid(),
  name: z.string(),
  grants: z.object({
    server: z.array(grantSchema),
    channels: z.record(z.string(), z.array(grantSchema)),
  }),
});

/**
 * Signs and checks the short-lived access tokens of accounts: HS256 JWTs carrying the account id,
 * display name and grants, so checking a request needs no database.
 */
export class AccessTokens {
  readonly #jwt: Hs256Jwt;
  readonly #ttlSeconds: number;

  constructor(secret: string, ttlSeconds: number) {
    if (secret.length < MIN_JWT_SECRET_LENGTH) {
      throw new Error(`the JWT secret must be at least ${MIN_JWT_SECRET_LENGTH} characters`);
    }
    this.#jwt = new Hs256Jwt(secret, { issuer: ISSUER, audience: AUDIENCE });
    this.#ttlSeconds = ttlSeconds;
  }

  /** Lifetime of the tokens it issues, in seconds. */
  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /** Issues a token for an account's principal. */
  sign(account: Principal): string {
    const grants = {
      server: [...account.serverGrants],
      channels: Object.fromEntries(
        [...account.channelGrants].map(([channel, channelGrants]) => [channel, [...channelGrants]]),
      ),
    };
    return this.#jwt.sign({ name: account.displayName, grants }, account.userId, this.#ttlSeconds);
  }

  /** Checks signature, lifetime and shape, and resolves the principal; `unauthorized` otherwise. */
  verify(token: string): Principal {
    let payload: unknown;
    try {
      payload = this.#jwt.verify(token);
    } catch (error) {
      if (!(error instanceof JwtRefusedError)) throw error;
      throw new AppError(
        'unauthorized',
        error.reason === 'expired' ? 'access token expired' : 'invalid token',
      );
    }
    const parsed = accessClaimsSchema.safeParse(payload);
    if (!parsed.success) {
      throw new AppError('unauthorized', `invalid token: ${describeZodError(parsed.error)}`);
    }
    const claims = parsed.data;
    return createPrincipal({
      userId: claims.sub,
      displayName: claims.name,
      guest: false,
      serverGrants: claims.grants.server,
      channelGrants: Object.entries(claims.grants.channels),
    });
  }
}
