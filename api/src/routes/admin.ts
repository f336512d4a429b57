import type Router from '@koa/router';
import type Koa from 'koa';
import {
  RANKS,
  createUserBodySchema,
  describeZodError,
  grantScopeSchema,
  setGrantsBodySchema,
  setRoleBodySchema,
  type AdminUser,
  type CreateUserBody,
  type GrantScope,
  type SetGrantsBody,
  type SetRoleBody,
  type UserGrants,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { hashPassword } from '../accounts/passwords';
import type { AppDeps } from '../app';
import { ALL_GRANTS, holdsGrant, rankIn, type Principal } from '../auth';
import type { UserRecord } from '../db/users';
import { callerOf, requireGrant, validateBody, type ApiState } from '../middleware';

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

// Display-name guests may moderate channels in the embedded profile, but accounts are managed by
// accounts (and the operator token) only: nobody anonymous disables someone's account.
const notGuest: Koa.Middleware = async (ctx, next) => {
  if (callerOf(ctx as { state: ApiState }).guest) {
    throw new AppError('forbidden', 'guests cannot manage accounts; sign in');
  }
  await next();
};

/**
 * Adds the account administration routes the admin CLI uses: listing, creating and disabling
 * accounts, their roles and their memberships. They need an account or the operator token with
 * `moderate` server-wide, and act only on accounts ranked below the caller: a moderator cannot
 * change, disable or demote an admin or another moderator.
 */
export function registerAdminRoutes(
  router: Router<ApiState>,
  deps: AppDeps,
  middleware: { limit: Koa.Middleware; signedIn: Koa.Middleware },
): void {
  const admin = [middleware.limit, middleware.signedIn, notGuest, requireGrant('moderate')];

  const findUser = async (username: string | undefined): Promise<UserRecord> => {
    const user = username === undefined ? undefined : await deps.users.byUsername(username);
    if (!user) throw new AppError('not_found', `no user ${username}`);
    return user;
  };

  const scopeOf = (raw: string | undefined): GrantScope => {
    const parsed = grantScopeSchema.safeParse(raw);
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid channel: ${describeZodError(parsed.error)}`);
    }
    return parsed.data;
  };

  // The caller must outrank the account it changes, as it stands now in the database.
  const requireOutranks = async (caller: Principal, user: UserRecord): Promise<void> => {
    const target = await deps.accounts.principalOf(user);
    if (rankIn(target) >= rankIn(caller)) {
      throw new AppError(
        'forbidden',
        `you cannot change ${user.username}: they rank as high as you`,
      );
    }
  };

  const grantsOf = async (user: UserRecord): Promise<UserGrants> => ({
    username: user.username,
    memberships: (await deps.memberships.forUser(user.id)).map((membership) => ({
      channel: membership.channel,
      grants: [...membership.grants],
    })),
  });

  router.get('/api/admin/users', ...admin, async (ctx) => {
    ctx.body = { users: (await deps.users.list()).map(describeAdminUser) };
  });

  router.post('/api/admin/users', ...admin, validateBody(createUserBodySchema), async (ctx) => {
    const body = ctx.state.body as CreateUserBody;
    if (body.admin && rankIn(callerOf(ctx)) <= RANKS.admin) {
      throw new AppError('forbidden', 'only the owner or the operator can make admins');
    }
    const user = await deps.users.create({
      username: body.username,
      displayName: body.displayName ?? body.username,
      passwordHash: await hashPassword(body.password),
      role: body.admin ? 'admin' : 'member',
    });
    ctx.status = 201;
    ctx.body = describeAdminUser(user);
  });

  router.post('/api/admin/users/:username/disable', ...admin, async (ctx) => {
    const user = await findUser(ctx.params.username);
    await requireOutranks(callerOf(ctx), user);
    ctx.body = describeAdminUser(await deps.users.disable(user.id));
  });

  // Roles below the caller's own only: admins make moderators (through grants) and members, the
  // owner makes admins, and only the operator token names a new owner.
  router.put(
    '/api/admin/users/:username/role',
    ...admin,
    validateBody(setRoleBodySchema),
    async (ctx) => {
      const caller = callerOf(ctx);
      const { role } = ctx.state.body as SetRoleBody;
      const user = await findUser(ctx.params.username);
      await requireOutranks(caller, user);
      if (RANKS[role] >= rankIn(caller)) {
        throw new AppError('forbidden', `you cannot make anyone ${role}`);
      }
      ctx.body = describeAdminUser(await deps.users.setRole(user.id, role));
    },
  );

  router.get('/api/admin/users/:username/grants', ...admin, async (ctx) => {
    ctx.body = await grantsOf(await findUser(ctx.params.username));
  });

  router.put(
    '/api/admin/users/:username/grants/:channel',
    ...admin,
    validateBody(setGrantsBodySchema),
    async (ctx) => {
      const scope = scopeOf(ctx.params.channel);
      const { grants } = ctx.state.body as SetGrantsBody;
      requireHeld(callerOf(ctx), grants, scope);
      const user = await findUser(ctx.params.username);
      await requireOutranks(callerOf(ctx), user);
      await deps.memberships.set(user.id, scope, grants);
      ctx.body = await grantsOf(user);
    },
  );

  router.delete('/api/admin/users/:username/grants/:channel', ...admin, async (ctx) => {
    const scope = scopeOf(ctx.params.channel);
    const user = await findUser(ctx.params.username);
    await requireOutranks(callerOf(ctx), user);
    if (!(await deps.memberships.remove(user.id, scope))) {
      throw new AppError('not_found', `${user.username} has no grants in ${scope}`);
    }
    ctx.status = 204;
  });
}
