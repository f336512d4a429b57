import {
  RANKS,
  adminUserListSchema,
  adminUserSchema,
  createUserBodySchema,
  describeZodError,
  grantScopeSchema,
  setGrantsBodySchema,
  setRoleBodySchema,
  userGrantsSchema,
  type AdminUser,
  type GrantScope,
  type UserGrants,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { hashPassword } from '../accounts/passwords';
import { ALL_GRANTS, holdsGrant, rankIn, type Principal } from '../auth';
import type { UserRecord } from '../db/users';
import { route, type Route, type RouteAuth, type RouteDeps } from './route';

function describeAdminUser(user: UserRecord): AdminUser {
  return {
    id: user.id,
    username: user.username,
    displayName: user.displayName,
    role: user.role,
    createdAt: user.createdAt.toISOString(),
    disabledAt: user.disabledAt?.toISOString() ?? null,
  };
}

// Nobody hands out what they do not hold: a moderator cannot mint an account stronger than
// itself. The operator token holds everything.
function requireHeld(caller: Principal, grants: readonly string[], scope: GrantScope): void {
  const missing = ALL_GRANTS.filter(
    (grant) => grants.includes(grant) && !holdsGrant(caller, grant, scope),
  );
  if (missing.length > 0) {
    throw new AppError(
      'forbidden',
      `you cannot give grants you do not hold: ${missing.join(', ')}`,
    );
  }
}

// The caller must outrank the account it changes, as it stands now in the database.
async function requireOutranks(deps: RouteDeps, caller: Principal, user: UserRecord) {
  const target = await deps.accounts.principalOf(user);
  if (rankIn(target) >= rankIn(caller)) {
    throw new AppError('forbidden', `you cannot change ${user.username}: they rank as high as you`);
  }
}

async function findUser(deps: RouteDeps, username: string | undefined): Promise<UserRecord> {
  const user = username === undefined ? undefined : await deps.users.byUsername(username);
  if (!user) throw new AppError('not_found', `no user ${username}`);
  return user;
}

function scopeOf(raw: string | undefined): GrantScope {
  const parsed = grantScopeSchema.safeParse(raw);
  if (!parsed.success) {
    throw new AppError('bad_request', `invalid channel: ${describeZodError(parsed.error)}`);
  }
  return parsed.data;
}

async function grantsOf(deps: RouteDeps, user: UserRecord): Promise<UserGrants> {
  return {
    username: user.username,
    memberships: (await deps.memberships.forUser(user.id)).map((membership) => ({
      channel: membership.channel,
      grants: [...membership.grants],
    })),
  };
}

// Accounts are managed by accounts (and the operator token) only: no guest disables an account.
const ADMIN: RouteAuth = { grant: 'moderate', accountsOnly: true };

/**
 * The account administration routes the admin CLI uses: listing, creating and disabling accounts,
 * their roles and their memberships. They need an account or the operator token with `moderate`
 * server-wide, and act only on accounts ranked below the caller: a moderator cannot change,
 * disable or demote an admin or another moderator.
 */
export const adminRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/admin/users',
    summary: 'Every account',
    auth: ADMIN,
    success: { status: 200, schema: adminUserListSchema },
    handle: async ({ deps }) => ({ users: (await deps.users.list()).map(describeAdminUser) }),
  }),
  route({
    method: 'post',
    path: '/api/admin/users',
    summary:
      'Creates an account; `admin` makes it an admin, with every grant in every channel (only the owner or the operator token may)',
    auth: ADMIN,
    body: createUserBodySchema,
    errors: { 409: 'The username is taken' },
    success: { status: 201, schema: adminUserSchema },
    async handle({ deps, body, caller }) {
      if (body.admin && rankIn(caller) <= RANKS.admin) {
        throw new AppError('forbidden', 'only the owner or the operator can make admins');
      }
      const user = await deps.users.create({
        username: body.username,
        displayName: body.displayName ?? body.username,
        passwordHash: await hashPassword(body.password),
        role: body.admin ? 'admin' : 'member',
      });
      return describeAdminUser(user);
    },
  }),
  route({
    method: 'post',
    path: '/api/admin/users/:username/disable',
    summary: 'Disables an account ranked below the caller and revokes its refresh tokens',
    auth: ADMIN,
    errors: { 404: 'No such account' },
    success: { status: 200, schema: adminUserSchema },
    async handle({ deps, params, caller }) {
      const user = await findUser(deps, params.username);
      await requireOutranks(deps, caller, user);
      return describeAdminUser(await deps.users.disable(user.id));
    },
  }),
  // Roles below the caller's own only: admins make members, the owner makes admins, and only the
  // operator token names a new owner.
  route({
    method: 'put',
    path: '/api/admin/users/:username/role',
    summary:
      "Sets an account's role (owner, admin or member); only below the caller's own rank, on an account ranked below the caller. Naming a new owner makes the current one an admin",
    auth: ADMIN,
    body: setRoleBodySchema,
    errors: { 404: 'No such account' },
    success: { status: 200, schema: adminUserSchema },
    async handle({ deps, params, body, caller }) {
      const user = await findUser(deps, params.username);
      await requireOutranks(deps, caller, user);
      if (RANKS[body.role] >= rankIn(caller)) {
        throw new AppError('forbidden', `you cannot make anyone ${body.role}`);
      }
      return describeAdminUser(await deps.users.setRole(user.id, body.role));
    },
  }),
  route({
    method: 'get',
    path: '/api/admin/users/:username/grants',
    summary: "An account's memberships: its grants per channel and server-wide (*)",
    auth: ADMIN,
    errors: { 404: 'No such account' },
    success: { status: 200, schema: userGrantsSchema },
    handle: async ({ deps, params }) => grantsOf(deps, await findUser(deps, params.username)),
  }),
  route({
    method: 'put',
    path: '/api/admin/users/:username/grants/:channel',
    summary:
      "Sets an account's grants in a channel or server-wide (*); only grants the caller holds, on an account ranked below the caller",
    auth: ADMIN,
    body: setGrantsBodySchema,
    errors: { 404: 'No such account' },
    success: { status: 200, schema: userGrantsSchema },
    async handle({ deps, params, body, caller }) {
      const scope = scopeOf(params.channel);
      requireHeld(caller, body.grants, scope);
      const user = await findUser(deps, params.username);
      await requireOutranks(deps, caller, user);
      await deps.memberships.set(user.id, scope, body.grants);
      return grantsOf(deps, user);
    },
  }),
  route({
    method: 'delete',
    path: '/api/admin/users/:username/grants/:channel',
    summary:
      "Removes an account's grants in a channel or server-wide (*), on an account ranked below the caller",
    auth: ADMIN,
    errors: { 404: 'No such account, or no grants there' },
    success: { status: 204 },
    async handle({ deps, params, caller }) {
      const scope = scopeOf(params.channel);
      const user = await findUser(deps, params.username);
      await requireOutranks(deps, caller, user);
      if (!(await deps.memberships.remove(user.id, scope))) {
        throw new AppError('not_found', `${user.username} has no grants in ${scope}`);
      }
    },
  }),
];
