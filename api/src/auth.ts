import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { displayNameSchema, describeZodError, grantSchema, type Grant } from '@hearth/protocol';
import { AppError, type Identity } from '@hearth/server-common';

/** Where a request's credentials were found: a header value or a query parameter. */
export interface Credentials {
  /** `Authorization` header, if any. */
  authorization?: string | undefined;
  /** `name` query parameter, used by browser WebSockets that cannot set headers. */
  guestName?: string | undefined;
}

/**
 * Turns credentials into an identity. This issue knows display-name guests only; the
 * control-plane issue adds account tokens here, and every route already asks through it.
 */
export class Authenticator {
  readonly #guestAccess: boolean;
  readonly #guestGrants: ReadonlySet<Grant>;
  readonly #adminTokenHash: Buffer | undefined;

  constructor(options: {
    guestAccess: boolean;
    guestGrants: readonly Grant[];
    adminToken?: string;
  }) {
    this.#guestAccess = options.guestAccess;
    this.#guestGrants = new Set(options.guestGrants);
    this.#adminTokenHash =
      options.adminToken === undefined ? undefined : sha256(options.adminToken);
  }

  /** Whether display-name guests are admitted. */
  get guestAccess(): boolean {
    return this.#guestAccess;
  }

  /** Resolves the caller, or throws `unauthorized`. */
  authenticate(credentials: Credentials): Identity {
    const bearer = credentials.authorization?.match(/^Bearer (.+)$/)?.[1];
    if (bearer !== undefined) return this.#admin(bearer);
    const guestName = credentials.guestName ?? parseGuestHeader(credentials.authorization);
    if (guestName === undefined) throw new AppError('unauthorized', 'credentials required');
    if (!this.#guestAccess) throw new AppError('unauthorized', 'guest access is disabled');
    const parsed = displayNameSchema.safeParse(guestName);
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid display name: ${describeZodError(parsed.error)}`);
    }
    return {
      userId: `guest:${randomUUID()}`,
      displayName: parsed.data,
      guest: true,
      grants: this.#guestGrants,
    };
  }

  // The operator's token (the admin CLI uses it) holds every grant. Hashing both sides first
  // gives equal lengths, so the comparison is constant-time whatever was presented.
  #admin(token: string): Identity {
    const expected = this.#adminTokenHash;
    if (!expected || !timingSafeEqual(sha256(token), expected)) {
      throw new AppError('unauthorized', 'invalid token');
    }
    return {
      userId: 'admin',
      displayName: 'admin',
      guest: false,
      grants: new Set(grantSchema.options),
    };
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

// Guests authenticate REST calls with `Authorization: Guest <url-encoded display name>`.
function parseGuestHeader(header: string | undefined): string | undefined {
  const match = header?.match(/^Guest (.+)$/);
  if (!match?.[1]) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    throw new AppError('bad_request', 'malformed Guest authorization header');
  }
}
