import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  SERVER_WIDE,
  describeZodError,
  displayNameSchema,
  grantSchema,
  type Grant,
} from '@hearth/protocol';
import { AppError, type Identity } from '@hearth/server-common';
import type { AccessTokens } from './accounts/access-tokens';

/** Where a request's credentials were found: a header value or query parameters. */
export interface Credentials {
  /** `Authorization` header, if any: `Bearer <access token or operator token>` or `Guest <name>`. */
  authorization?: string | undefined;
  /** `name` query parameter: a guest's display name, for browser WebSockets that cannot set headers. */
  guestName?: string | undefined;
  /** `access_token` query parameter: an access token, for the same WebSockets. */
  accessToken?: string | undefined;
}

/** Who a request acts as, and what it may do in every channel and in single channels. */
export interface Principal {
  /** Account id (uuid), `admin` for the operator token, or `guest:<uuid>` for a guest. */
  readonly userId: string;
  /** Name shown to others. */
  readonly displayName: string;
  /** True for a display-name guest without an account. */
  readonly guest: boolean;
  /** True when it holds every grant server-wide: the operator token, or an admin account. */
  readonly admin: boolean;
  /** Grants held in every channel. */
  readonly serverGrants: ReadonlySet<Grant>;
  /** Further grants held in single channels, by channel name. */
  readonly channelGrants: ReadonlyMap<string, ReadonlySet<Grant>>;
}

/** User id of the operator token's principal. */
export const OPERATOR_USER_ID = 'admin';

/** Every grant there is. */
export const ALL_GRANTS: readonly Grant[] = grantSchema.options;

/**
 * Builds a principal from its grants; `admin` follows from holding every grant server-wide.
 * Channel grants already held server-wide are left out, so the map names only what it adds.
 */
export function createPrincipal(options: {
  userId: string;
  displayName: string;
  guest: boolean;
  serverGrants: Iterable<Grant>;
  channelGrants?: Iterable<readonly [string, Iterable<Grant>]>;
}): Principal {
  const serverGrants = new Set(options.serverGrants);
  const channelGrants = new Map<string, ReadonlySet<Grant>>();
  for (const [channel, grants] of options.channelGrants ?? []) {
    const extra = new Set([...grants].filter((grant) => !serverGrants.has(grant)));
    if (extra.size > 0) channelGrants.set(channel, extra);
  }
  return {
    userId: options.userId,
    displayName: options.displayName,
    guest: options.guest,
    admin: ALL_GRANTS.every((grant) => serverGrants.has(grant)),
    serverGrants,
    channelGrants,
  };
}

/** The grants a principal holds in one channel; `*` gives the server-wide grants alone. */
export function grantsIn(principal: Principal, channel: string): ReadonlySet<Grant> {
  const extra = channel === SERVER_WIDE ? undefined : principal.channelGrants.get(channel);
  return extra ? new Set([...principal.serverGrants, ...extra]) : principal.serverGrants;
}

/** Whether a principal holds a grant in a channel, or server-wide when `channel` is `*`. */
export function holdsGrant(
  principal: Principal,
  grant: Grant,
  channel: string = SERVER_WIDE,
): boolean {
  return grantsIn(principal, channel).has(grant);
}

/** The identity a principal has inside one channel: its grants are those that apply there. */
export function identityIn(principal: Principal, channel: string): Identity {
  return {
    userId: principal.userId,
    displayName: principal.displayName,
    guest: principal.guest,
    grants: grantsIn(principal, channel),
  };
}

/** The account id behind a principal, or undefined for guests and the operator token. */
export function accountIdOf(principal: Principal): string | undefined {
  return principal.guest || principal.userId === OPERATOR_USER_ID ? undefined : principal.userId;
}

/**
 * Turns credentials into a principal: account access tokens (JWT), the operator token, and
 * display-name guests while guest access is on. Every route and socket asks through it.
 */
export class Authenticator {
  readonly #guestAccess: boolean;
  readonly #guestGrants: ReadonlySet<Grant>;
  readonly #adminTokenHash: Buffer | undefined;
  readonly #accessTokens: AccessTokens;

  constructor(options: {
    guestAccess: boolean;
    guestGrants: readonly Grant[];
    adminToken?: string | undefined;
    accessTokens: AccessTokens;
  }) {
    this.#guestAccess = options.guestAccess;
    this.#guestGrants = new Set(options.guestGrants);
    this.#adminTokenHash =
      options.adminToken === undefined ? undefined : sha256(options.adminToken);
    this.#accessTokens = options.accessTokens;
  }

  /** Whether display-name guests are admitted. */
  get guestAccess(): boolean {
    return this.#guestAccess;
  }

  /** Resolves the caller; `unauthorized` without valid credentials, `bad_request` for a bad name. */
  async authenticate(credentials: Credentials): Promise<Principal> {
    const bearer =
      credentials.authorization?.match(/^Bearer (.+)$/)?.[1] ?? credentials.accessToken;
    if (bearer !== undefined) return this.#bearer(bearer);
    const guestName = credentials.guestName ?? parseGuestHeader(credentials.authorization);
    if (guestName === undefined) throw new AppError('unauthorized', 'credentials required');
    if (!this.#guestAccess) throw new AppError('unauthorized', 'guest access is disabled');
    const parsed = displayNameSchema.safeParse(guestName);
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid display name: ${describeZodError(parsed.error)}`);
    }
    return createPrincipal({
      userId: `guest:${randomUUID()}`,
      displayName: parsed.data,
      guest: true,
      serverGrants: this.#guestGrants,
    });
  }

  // The operator's token (the admin CLI uses it) holds every grant; anything else must be an
  // access token. Hashing both sides first gives equal lengths, so the comparison is
  // constant-time whatever was presented.
  async #bearer(token: string): Promise<Principal> {
    const expected = this.#adminTokenHash;
    if (expected && timingSafeEqual(sha256(token), expected)) {
      return createPrincipal({
        userId: OPERATOR_USER_ID,
        displayName: 'admin',
        guest: false,
        serverGrants: ALL_GRANTS,
      });
    }
    return this.#accessTokens.verify(token);
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
