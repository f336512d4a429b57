import { describeZodError, meSchema, type Grant, type Me } from '@hearth/protocol';
import { z } from 'zod';
import { invalidResponse, readJson, send } from './http';

/** Roles the api names, from the least to the most powerful. */
export const ROLES = ['guest', 'member', 'moderator', 'admin', 'owner', 'operator'] as const;

/** One of the roles the api names. */
export type Role = (typeof ROLES)[number];

/** Who the caller is and what it may do, as `GET /api/auth/me` reports it. */
export type Permissions = Omit<Me, 'role'> & {
  /** The caller's role; null while the api does not report one. */
  role: Role | null;
};

/** A role's standing: moderators act only on participants of a lower rank. */
export function rankOf(role: Role): number {
  return ROLES.indexOf(role);
}

// Roles arrive with the api's roles release; until then the answer has no `role` field, and an
// unknown role is treated as none rather than failing the whole answer.
const roleFieldSchema = z.object({ role: z.enum(ROLES) });

/** Fetches the caller's identity, role and grants. */
export async function fetchPermissions(signal?: AbortSignal): Promise<Permissions> {
  const response = await send('/api/auth/me', { signal });
  const json = await readJson(response);
  const me = meSchema.safeParse(json);
  if (!me.success) throw invalidResponse(response, describeZodError(me.error));
  const role = roleFieldSchema.safeParse(json);
  return { ...me.data, role: role.success ? role.data.role : null };
}

/** True when `permissions` hold `grant` server-wide, or in `channel` when one is named. */
export function holds(permissions: Permissions | null, grant: Grant, channel?: string): boolean {
  if (!permissions) return false;
  if (permissions.serverGrants.includes(grant)) return true;
  // Own keys only: a channel may be called `constructor`, which every object inherits.
  if (channel === undefined || !Object.hasOwn(permissions.channelGrants, channel)) return false;
  return permissions.channelGrants[channel]?.includes(grant) ?? false;
}
