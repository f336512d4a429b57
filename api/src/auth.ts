import { createHash, timingSafeEqual } from 'node:crypto';
import { RANKS, SERVER_WIDE, grantSchema, type Grant, type Role } from '@hearth/protocol';
import { AppError, type Identity } from '@hearth/server-common';
import type { AccessTokens } from './accounts/access-tokens';

/** Where a request's credentials were found: a header value or a query parameter. */
export interface Credentials {
  /** `Authorization` header, if any: `Bearer <access token, guest token or operator token>`. */
  authorization?: string | undefined;
  /** `access_token` query parameter, for browser WebSockets that cannot set headers. */
  accessToken?: string | undefined;
}

/** What a principal is, before channel grants: the operator token, an account's role, a guest. */
export type BaseRole = 'operator' | 'owner' | 'admin' | 'member' | 'guest';

/** Who a request acts as, and what it may do in every channel and in single channels. */
export interface Principal {
  /** Account id (uuid), `admin` for the operator token, or `guest:<uuid>` for a guest. */
  readonly userId: string;
  /** Name shown to others. */
  readonly displayName: string;
  /** True for a display-name guest without an account. */
  readonly guest: boolean;
  /** The operator token, the account's stored role, or guest. */
  readonly baseRole: BaseRole;
  /** True for the operator token, the owner and admins: every grant in every channel. */
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
 * Builds a principal from its role and grants: the operator, the owner and admins hold every
 * grant server-wide. Channel grants already held server-wide are left out, so the map names only
 * what it adds.
 */
export function createPrincipal(options: {
  userId: string;
  displayName: string;
  baseRole: BaseRole;
  serverGrants: Iterable<Grant>;
  channelGrants?: Iterable<readonly [string, Iterable<Grant>]>;
}): Principal {
  const admin = RANKS[options.baseRole] >= RANKS.admin;
  const serverGrants = new Set(admin ? ALL_GRANTS : options.serverGrants);
  const channelGrants = new Map<string, ReadonlySet<Grant>>();
  for (const [channel, grants] of options.channelGrants ?? []) {
    const extra = new Set([...grants].filter((grant) => !serverGrants.has(grant)));
    if (extra.size > 0) channelGrants.set(channel, extra);
  }
  return {
    userId: options.userId,
    displayName: options.displayName,
    guest: options.baseRole === 'guest',
    baseRole: options.baseRole,
    admin,
    serverGrants,
    channelGrants,
  };
}

/** A principal's role in a channel (server-wide for `*`): moderator comes from `moderate`. */
export function roleIn(principal: Principal, channel: string = SERVER_WIDE): Role {
  if (principal.baseRole === 'member' && holdsGrant(principal, 'moderate', channel)) {
    return 'moderator';
  }
  return principal.baseRole;
}

/** A principal's rank in a channel: it may act only on those ranked below it there. */
export function rankIn(principal: Principal, channel: string = SERVER_WIDE): number {
  return RANKS[roleIn(principal, channel)];
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

/** The identity a principal has inside one channel: its grants and rank are those there. */
export function identityIn(principal: Principal, channel: string): Identity {
  return {
    userId: principal.userId,
    displayName: principal.displayName,
    guest: principal.guest,
    grants: grantsIn(principal, channel),
    rank: rankIn(principal, channel),
  };
}

/** The account id behind a principal, or undefined for guests and the operator token. */
export function accountIdOf(principal: Principal): string | undefined {
  return principal.guest || principal.userId === OPERATOR_USER_ID ? undefined : principal.userId;
}

/**
 * Turns credentials into a principal: access tokens of accounts and of guest sessions (JWT), and
 * the operator token. Every route and socket asks through it.
 */
export class Authenticator {
  readonly #adminTokenHash: Buffer | undefined;
  readonly #accessTokens: AccessTokens;

  constructor(options: { adminToken?: string | undefined; accessTokens: AccessTokens }) {
    this.#adminTokenHash =
      options.adminToken === undefined ? undefined : sha256(options.adminToken);
    this.#accessTokens = options.accessTokens;
  }

  /** Resolves the caller; `unauthorized` without valid credentials. */
  async authenticate(credentials: Credentials): Promise<Principal> {
    const bearer =
      credentials.authorization?.match(/^Bearer (.+)$/)?.[1] ?? credentials.accessToken;
    if (bearer === undefined) throw new AppError('unauthorized', 'credentials required');
    return this.#bearer(bearer);
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
        baseRole: 'operator',
        serverGrants: ALL_GRANTS,
      });
    }
    return this.#accessTokens.verify(token);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
