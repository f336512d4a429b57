import type { Grant } from '@hearth/protocol';

/** Who a connection acts as, and what it may do; the api resolves it, services trust it. */
export interface Identity {
  /** Stable id of the user, or a generated one for a guest. */
  readonly userId: string;
  /** Name shown to other participants. */
  readonly displayName: string;
  /** True for a display-name guest without an account. */
  readonly guest: boolean;
  /** Grants that apply to the channel being accessed. */
  readonly grants: ReadonlySet<Grant>;
}
