import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { describeZodError, grantSchema, type Grant } from '@hearth/protocol';
import { AppError, CompactJwt, JwtRefusedError, hs256Key } from '@hearth/server-common';
import { createPrincipal, type Principal } from '../auth';

const ISSUER = 'hearth-api';
const AUDIENCE = 'hearth-api';

/** Shortest signing secret accepted: 32 characters. */
export const MIN_JWT_SECRET_LENGTH = 32;

/** How long a guest session lasts, in seconds: a guest then starts a new one. */
export const GUEST_SESSION_TTL_SECONDS = 12 * 3600;

/** The id prefix of guest sessions: `guest:<uuid>`. */
const GUEST_ID = /^guest:[0-9a-f-]{36}$/;

// What an access token says beyond the registered claims. An account's token carries its role and
// grants at the time it was issued, so grant changes apply at the next refresh; a guest session's
// carries no grants, which come from the server's guest settings at each request.
const accessClaimsSchema = z.discriminatedUnion('role', [
  z.object({
    role: z.enum(['owner', 'admin', 'member']),
    sub: z.uuid(),
    name: z.string(),
    grants: z.object({
      server: z.array(grantSchema),
      channels: z.record(z.string(), z.array(grantSchema)),
    }),
  }),
  z.object({ role: z.literal('guest'), sub: z.string().regex(GUEST_ID), name: z.string() }),
]);

/**
 * Signs and checks the access tokens of accounts and guest sessions: HS256 JWTs carrying the id,
 * display name, role and (for accounts) grants, so checking a request needs no database.
 */
export class AccessTokens {
  readonly #jwt: CompactJwt;
  readonly #ttlSeconds: number;
  readonly #guestAccess: boolean;
  readonly #guestGrants: readonly Grant[];

  constructor(options: {
    secret: string;
    ttlSeconds: number;
    /** Whether guest sessions are accepted; off, their tokens stop working at once. */
    guestAccess: boolean;
    /** Grants a guest holds in every channel. */
    guestGrants: readonly Grant[];
  }) {
    if (options.secret.length < MIN_JWT_SECRET_LENGTH) {
      throw new Error(`the JWT secret must be at least ${MIN_JWT_SECRET_LENGTH} characters`);
    }
    this.#jwt = new CompactJwt(hs256Key(options.secret), { issuer: ISSUER, audience: AUDIENCE });
    this.#ttlSeconds = options.ttlSeconds;
    this.#guestAccess = options.guestAccess;
    this.#guestGrants = options.guestGrants;
  }

  /** Lifetime of account tokens, in seconds. */
  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /** Whether guest sessions may start. */
  get guestAccess(): boolean {
    return this.#guestAccess;
  }

  /** Issues a token for an account's principal. */
  sign(account: Principal): string {
    if (account.guest || account.baseRole === 'operator') {
      throw new Error('access tokens are for accounts; guests get guest sessions');
    }
    const grants = {
      server: [...account.serverGrants],
      channels: Object.fromEntries(
        [...account.channelGrants].map(([channel, channelGrants]) => [channel, [...channelGrants]]),
      ),
    };
    return this.#jwt.sign(
      { name: account.displayName, role: account.baseRole, grants },
      account.userId,
      this.#ttlSeconds,
    );
  }

  /** Starts a guest session under a (normalized) display name: its token and its id. */
  signGuest(displayName: string): { token: string; userId: string } {
    if (!this.#guestAccess) throw new AppError('forbidden', 'guest access is disabled');
    const userId = `guest:${randomUUID()}`;
    const token = this.#jwt.sign(
      { name: displayName, role: 'guest' },
      userId,
      GUEST_SESSION_TTL_SECONDS,
    );
    return { token, userId };
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
    if (claims.role === 'guest') {
      if (!this.#guestAccess) throw new AppError('unauthorized', 'guest access is disabled');
      return createPrincipal({
        userId: claims.sub,
        displayName: claims.name,
        baseRole: 'guest',
        serverGrants: this.#guestGrants,
      });
    }
    return createPrincipal({
      userId: claims.sub,
      displayName: claims.name,
      baseRole: claims.role,
      serverGrants: claims.grants.server,
      channelGrants: Object.entries(claims.grants.channels),
    });
  }
}
