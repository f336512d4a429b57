import { z } from 'zod';
import { channelNameSchema, displayNameSchema, grantSchema, roleSchema } from './common';

/** The membership scope that stands for every channel of the server. */
export const SERVER_WIDE = '*';

/** An account's login name: 3-32 letters, digits, ".", "-" or "_"; unique whatever its case. */
export const usernameSchema = z
  .string()
  .trim()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$/,
    'must be 3-32 letters, digits, ".", "-" or "_", starting with a letter or digit',
  );

/** A new password: 8 to 128 characters. */
export const passwordSchema = z
  .string()
  .min(8, 'must be at least 8 characters')
  .max(128, 'must be at most 128 characters');

/** What an account is stored as; moderators are members holding the `moderate` grant. */
export const accountRoleSchema = z.enum(['owner', 'admin', 'member']);

/** What an account is stored as. */
export type AccountRole = z.infer<typeof accountRoleSchema>;

/** Where a membership applies: one channel, or `*` for every channel. */
export const grantScopeSchema = z.union([z.literal(SERVER_WIDE), channelNameSchema]);

/** Where a membership applies. */
export type GrantScope = z.infer<typeof grantScopeSchema>;

/** Body of `POST /api/auth/register`. */
export const registerBodySchema = z
  .object({
    username: usernameSchema,
    password: passwordSchema,
    /** Name shown to others; the username when left out. */
    displayName: displayNameSchema.optional(),
  })
  .strict();

/** Body of `POST /api/auth/register`. */
export type RegisterBody = z.infer<typeof registerBodySchema>;

/** Body of `POST /api/auth/login`. Lengths are bounded only, so old accounts can still log in. */
export const loginBodySchema = z
  .object({
    username: z.string().trim().min(1, 'must not be empty').max(64),
    password: z.string().min(1, 'must not be empty').max(128),
  })
  .strict();

/** Body of `POST /api/auth/login`. */
export type LoginBody = z.infer<typeof loginBodySchema>;

/** Body of `POST /api/auth/refresh` and `POST /api/auth/logout`. */
export const refreshBodySchema = z.object({ refreshToken: z.string().min(1).max(256) }).strict();

/** Body of `POST /api/auth/refresh` and `POST /api/auth/logout`. */
export type RefreshBody = z.infer<typeof refreshBodySchema>;

/** The public view of an account. */
export const authUserSchema = z.object({
  id: z.string(),
  username: z.string(),
  displayName: z.string(),
});

/** The public view of an account. */
export type AuthUser = z.infer<typeof authUserSchema>;

/** Response of login, register and refresh: a short-lived access token and its refresh token. */
export const tokenResponseSchema = z.object({
  /** JWT sent as `Authorization: Bearer <token>`. */
  accessToken: z.string(),
  /** Opaque, single-use token that buys the next pair. */
  refreshToken: z.string(),
  /** Seconds until the access token expires. */
  expiresIn: z.number().int().positive(),
  user: authUserSchema,
});

/** Response of login, register and refresh. */
export type TokenResponse = z.infer<typeof tokenResponseSchema>;

/**
 * Response of `POST /api/auth/refresh` when the refresh token came in the browser's httpOnly
 * cookie: the new refresh token goes back in the cookie only, never to the page's scripts.
 */
export const sessionResponseSchema = tokenResponseSchema.omit({ refreshToken: true });

/** Response of a refresh by cookie. */
export type SessionResponse = z.infer<typeof sessionResponseSchema>;

/** Response of `GET /api/auth/me`: who the caller is and what it may do. */
export const meSchema = z.object({
  id: z.string(),
  displayName: z.string(),
  /** Login name; null for guests and the operator token. */
  username: z.string().nullable(),
  guest: z.boolean(),
  /** True for the operator token, the owner and admins. */
  admin: z.boolean(),
  /** Server-wide role: moderator for members holding `moderate` in every channel. */
  role: roleSchema,
  /** Grants held in every channel. */
  serverGrants: z.array(grantSchema),
  /** Further grants held in single channels. */
  channelGrants: z.record(z.string(), z.array(grantSchema)),
});

/** Response of `GET /api/auth/me`. */
export type Me = z.infer<typeof meSchema>;

/** Body of `POST /api/auth/guest`: the name a guest is shown under. */
export const guestSessionBodySchema = z.object({ displayName: displayNameSchema }).strict();

/** Body of `POST /api/auth/guest`. */
export type GuestSessionBody = z.infer<typeof guestSessionBodySchema>;

/** Response of `POST /api/auth/guest`: a guest session's access token and who it is. */
export const guestSessionSchema = z.object({
  /** Sent as `Authorization: Bearer <token>`; one guest session until it expires. */
  accessToken: z.string(),
  /** Seconds until it expires; a guest then starts a new session. */
  expiresIn: z.number().int().positive(),
  user: z.object({ id: z.string(), displayName: z.string() }),
});

/** Response of `POST /api/auth/guest`. */
export type GuestSession = z.infer<typeof guestSessionSchema>;

/** An account as the admin API lists it. */
export const adminUserSchema = authUserSchema.extend({
  role: accountRoleSchema,
  createdAt: z.string(),
  /** When it was disabled; null while it may log in. */
  disabledAt: z.string().nullable(),
});

/** An account as the admin API lists it. */
export type AdminUser = z.infer<typeof adminUserSchema>;

/** Response of `GET /api/admin/users`. */
export const adminUserListSchema = z.object({ users: z.array(adminUserSchema) });

/** Body of `POST /api/admin/users`. */
export const createUserBodySchema = z
  .object({
    username: usernameSchema,
    password: passwordSchema,
    displayName: displayNameSchema.optional(),
    /** Gives the account every grant in every channel. */
    admin: z.boolean().optional(),
  })
  .strict();

/** Body of `POST /api/admin/users`. */
export type CreateUserBody = z.infer<typeof createUserBodySchema>;

/** Grants an account holds in one scope, beyond the server's default grants. */
export const membershipSchema = z.object({
  channel: grantScopeSchema,
  grants: z.array(grantSchema),
});

/** Grants an account holds in one scope. */
export type Membership = z.infer<typeof membershipSchema>;

/** Response of the admin grant routes: an account's memberships. */
export const userGrantsSchema = z.object({
  username: z.string(),
  memberships: z.array(membershipSchema),
});

/** Response of the admin grant routes. */
export type UserGrants = z.infer<typeof userGrantsSchema>;

/** Body of `PUT /api/admin/users/:username/grants/:channel`: the scope's complete grant list. */
export const setGrantsBodySchema = z
  .object({ grants: z.array(grantSchema).min(1, 'must name at least one grant') })
  .strict();

/** Body of `PUT /api/admin/users/:username/grants/:channel`. */
export type SetGrantsBody = z.infer<typeof setGrantsBodySchema>;

/** Body of `PUT /api/admin/users/:username/role`. */
export const setRoleBodySchema = z.object({ role: accountRoleSchema }).strict();

/** Body of `PUT /api/admin/users/:username/role`. */
export type SetRoleBody = z.infer<typeof setRoleBodySchema>;

/** A ban: a user kept out of one channel, or of every channel (`*`). */
export const banSchema = z.object({
  scope: grantScopeSchema,
  /** Account id, or a guest session's id. */
  userId: z.string(),
  /** The name it had when banned. */
  displayName: z.string(),
  /** Who banned it (user id, or `admin` for the operator token). */
  bannedBy: z.string(),
  createdAt: z.string(),
});

/** A ban. */
export type Ban = z.infer<typeof banSchema>;

/** Response of `GET /api/bans`. */
export const banListSchema = z.object({ bans: z.array(banSchema) });

/** Body of `POST /api/channels/:name/participants/:peerId/ban`. */
export const banBodySchema = z.object({ serverWide: z.boolean().default(false) }).strict();

/** Body of `POST /api/channels/:name/participants/:peerId/ban`. */
export type BanBody = z.input<typeof banBodySchema>;
