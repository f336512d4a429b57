import type { Grant } from '@hearth/protocol';
import { computed, shallowRef, watch, type Ref } from 'vue';
import { ApiError } from '../api/http';
import { fetchPermissions, holds, type Permissions, type Role } from '../api/permissions';
import { signedInUser } from '../api/session';

/** What `usePermissions` returns. */
export interface PermissionsState {
  /** The caller's identity and grants; null until known, or when they could not be read. */
  permissions: Readonly<Ref<Permissions | null>>;
  /** The caller's role, when the api reports one. */
  role: Readonly<Ref<Role | null>>;
  /** True once the first answer (or failure) arrived. */
  loaded: Readonly<Ref<boolean>>;
  /**
   * The grants could not be read (the server is unreachable or failing), so what the caller may
   * do is unknown; a caller the server does not admit at all simply holds nothing.
   */
  failed: Readonly<Ref<boolean>>;
  /**
   * True when the caller holds `grant` server-wide, or in `channel` when one is named. False
   * while unknown: an action is offered only once it is known to be allowed.
   */
  can(grant: Grant, channel?: string): boolean;
}

// One answer serves every view: the header and the page it shows ask at the same moment.
const permissions = shallowRef<Permissions | null>(null);
const loaded = shallowRef(false);
const failed = shallowRef(false);
let inFlight: Promise<void> | null = null;
// Bumped on every sign-in change, so an answer about the previous caller is dropped.
let generation = 0;

function reload(): Promise<void> {
  const asked = generation;
  inFlight ??= fetchPermissions()
    .then(
      (answer) => {
        if (asked !== generation) return;
        permissions.value = answer;
        failed.value = false;
      },
      (failure: unknown) => {
        // Nothing is offered that the caller may not hold; the server still decides every call.
        if (asked !== generation) return;
        permissions.value = null;
        failed.value = !(failure instanceof ApiError && failure.status === 401);
      },
    )
    .finally(() => {
      inFlight = null;
      if (asked === generation) loaded.value = true;
      else void reload();
    });
  return inFlight;
}

// Signing in or out (in this tab or another) changes who the caller is: what was known about the
// previous caller no longer holds. The app lives as long as this module, so this never stops.
watch(signedInUser, () => {
  generation++;
  permissions.value = null;
  loaded.value = false;
  void reload();
});

/**
 * The caller's grants, read again from the api whenever a view opens (grants change while the
 * app runs) and whenever someone signs in or out, so views offer only what the caller may do.
 */
export function usePermissions(): PermissionsState {
  void reload();
  return {
    permissions,
    role: computed(() => permissions.value?.role ?? null),
    loaded,
    failed,
    can: (grant, channel) => holds(permissions.value, grant, channel),
  };
}
