import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout } from 'node:timers/promises';
import {
  SERVER_WIDE,
  type AuthUser,
  type Grant,
  type GuestSession,
  type LoginBody,
  type Me,
  type RegisterBody,
  type TokenResponse,
} from '@hearth/protocol';
import { AppError, type Logger } from '@hearth/server-common';
import { createPrincipal, roleIn, type Principal } from '../auth';
import type { MembershipStore } from '../db/memberships';
import type { RefreshTokenStore } from '../db/refresh-tokens';
import type { UserRecord, UserStore } from '../db/users';
import { GUEST_SESSION_TTL_SECONDS, type AccessTokens } from './access-tokens';
import type { LoginThrottle } from './login-throttle';
import { hashPassword, verifyPassword } from './passwords';

// Refresh tokens are 256 random bits, so one SHA-256 makes a leaked table useless; a slow KDF is
// for low-entropy secrets such as passwords.
const REFRESH_TOKEN_PREFIX = 'rt_';

function hashRefreshToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function newRefreshToken(ttlSeconds: number): { text: string; hash: Buffer; expiresAt: Date } {
  const text = `${REFRESH_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return {
    text,
    hash: hashRefreshToken(text),
    expiresAt: new Date(Date.now() + ttlSeconds * 1000),
  };
}

/** The public view of an account. */
export function describeUser(user: UserRecord): AuthUser {
  return { id: user.id, username: user.username, displayName: user.displayName };
}

/**
 * Accounts and their sessions: registration, password login, refresh-token rotation with reuse
 * detection, logout, and the principal an account acts as.
 */
export class AccountService {
  readonly #users: UserStore;
  readonly #memberships: MembershipStore;
  readonly #refreshTokens: RefreshTokenStore;
  readonly #accessTokens: AccessTokens;
  readonly #throttle: LoginThrottle;
  readonly #userGrants: readonly Grant[];
  readonly #refreshTtlSeconds: number;
  readonly #registration: boolean;
  readonly #logger: Logger;
  #decoyHash: Promise<string> | undefined;

  constructor(options: {
    users: UserStore;
    memberships: MembershipStore;
    refreshTokens: RefreshTokenStore;
    accessTokens: AccessTokens;
    throttle: LoginThrottle;
    /** Grants every account holds server-wide. */
    userGrants: readonly Grant[];
    refreshTtlSeconds: number;
    /** Whether anyone may register. */
    registration: boolean;
    logger: Logger;
  }) {
    this.#users = options.users;
    this.#memberships = options.memberships;
    this.#refreshTokens = options.refreshTokens;
    this.#accessTokens = options.accessTokens;
    this.#throttle = options.throttle;
    this.#userGrants = options.userGrants;
    this.#refreshTtlSeconds = options.refreshTtlSeconds;
    this.#registration = options.registration;
    this.#logger = options.logger.child({ component: 'accounts' });
  }

  /**
   * Creates an account and logs it in; `forbidden` while registration is off. On a fresh install
   * (no owner yet) the first account registered becomes the owner.
   */
  async register(body: RegisterBody): Promise<TokenResponse> {
    if (!this.#registration) throw new AppError('forbidden', 'registration is disabled');
    const user = await this.#users.create({
      username: body.username,
      displayName: body.displayName ?? body.username,
      passwordHash: await hashPassword(body.password),
      firstIsOwner: true,
    });
    this.#logger.info({ user: user.id, role: user.role }, 'account registered');
    return this.#startSession(user);
  }

  /** Starts a guest session under a display name; `forbidden` while guest access is off. */
  startGuestSession(displayName: string): GuestSession {
    const { token, userId } = this.#accessTokens.signGuest(displayName);
    return {
      accessToken: token,
      expiresIn: GUEST_SESSION_TTL_SECONDS,
      user: { id: userId, displayName },
    };
  }

  /**
   * Checks a username and password and starts a session. Unknown usernames cost one hash too,
   * so the answer's timing does not tell which accounts exist. A client address that failed too
   * often is refused (`rate_limited`), even with the right password; a wrong password on a
   * username that failed often is answered late. A right password is never held back for its
   * username's failures, so nobody can lock its owner out.
   */
  async login(body: LoginBody, clientAddress: string): Promise<TokenResponse> {
    if (!this.#throttle.admit(clientAddress)) {
      throw new AppError('rate_limited', 'too many failed logins from this address; try later');
    }
    const user = await this.#users.byUsername(body.username);
    const matches = await verifyPassword(
      body.password,
      user?.passwordHash ?? (await this.#decoy()),
    );
    if (!user || !matches) {
      await setTimeout(this.#throttle.failed(body.username));
      throw new AppError('unauthorized', 'invalid username or password');
    }
    this.#throttle.succeeded(clientAddress);
    if (user.disabledAt) throw new AppError('unauthorized', 'this account is disabled');
    return this.#startSession(user);
  }

  /**
   * Trades a refresh token for a new pair. Each token works once; presenting a used one again
   * revokes every token of its login, since one of the two presenters stole it.
   */
  async refresh(refreshToken: string): Promise<TokenResponse> {
    const next = newRefreshToken(this.#refreshTtlSeconds);
    const result = await this.#refreshTokens.rotate(hashRefreshToken(refreshToken), {
      tokenHash: next.hash,
      expiresAt: next.expiresAt,
    });
    if (result.kind === 'reused') {
      this.#logger.warn(
        { user: result.userId, family: result.familyId },
        'refresh token reused: its login is revoked',
      );
      throw new AppError('unauthorized', 'refresh token already used; sign in again');
    }
    if (result.kind !== 'rotated') throw new AppError('unauthorized', 'invalid refresh token');
    const user = await this.#users.byId(result.userId);
    if (!user || user.disabledAt) {
      await this.#refreshTokens.revokeFamily(result.familyId);
      throw new AppError('unauthorized', 'this account is disabled');
    }
    return this.#tokens(user, next.text);
  }

  /** Ends the login a refresh token belongs to; unknown tokens are ignored. */
  async logout(refreshToken: string): Promise<void> {
    await this.#refreshTokens.revokeFamilyOf(hashRefreshToken(refreshToken));
  }

  /** The principal of an account: its role, the server's default grants and its memberships. */
  async principalOf(user: UserRecord): Promise<Principal> {
    const memberships = await this.#memberships.forUser(user.id);
    const serverWide = memberships.find((membership) => membership.channel === SERVER_WIDE);
    return createPrincipal({
      userId: user.id,
      displayName: user.displayName,
      baseRole: user.role,
      serverGrants: [...this.#userGrants, ...(serverWide?.grants ?? [])],
      channelGrants: memberships
        .filter((membership) => membership.channel !== SERVER_WIDE)
        .map((membership) => [membership.channel, membership.grants] as const),
    });
  }

  /** Describes the caller of `GET /api/auth/me`; accounts include their username. */
  async describe(caller: Principal): Promise<Me> {
    const account = caller.guest ? undefined : await this.#users.byId(caller.userId);
    return {
      id: caller.userId,
      displayName: account?.displayName ?? caller.displayName,
      username: account?.username ?? null,
      guest: caller.guest,
      admin: caller.admin,
      role: roleIn(caller),
      serverGrants: [...caller.serverGrants],
      channelGrants: Object.fromEntries(
        [...caller.channelGrants].map(([channel, grants]) => [channel, [...grants]]),
      ),
    };
  }

  async #startSession(user: UserRecord): Promise<TokenResponse> {
    const refresh = newRefreshToken(this.#refreshTtlSeconds);
    await this.#refreshTokens.issue(user.id, randomUUID(), {
      tokenHash: refresh.hash,
      expiresAt: refresh.expiresAt,
    });
    return this.#tokens(user, refresh.text);
  }

  async #tokens(user: UserRecord, refreshToken: string): Promise<TokenResponse> {
    return {
      accessToken: await this.#accessTokens.sign(await this.principalOf(user)),
      refreshToken,
      expiresIn: this.#accessTokens.ttlSeconds,
      user: describeUser(user),
    };
  }

  // A real hash of a random password, made once: verifying against it costs what verifying a
  // real account's password costs.
  #decoy(): Promise<string> {
    this.#decoyHash ??= hashPassword(randomBytes(16).toString('hex'));
    return this.#decoyHash;
  }
}
