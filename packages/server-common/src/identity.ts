import { RANKS, type Grant, type SharePresetId } from '@hearth/protocol';

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
  /**
   * Standing in the channel (`RANKS` in the protocol): a moderator acts only on lower ranks.
   * Without it, `rankOf` derives one from the grants.
   */
  readonly rank?: number;
  /** Joins muted by a moderator: an account's server mute outlives its sessions. */
  readonly serverMuted?: boolean;
  /** A spectator: receives the channel's screen shares only, and is in no roster. */
  readonly spectator?: boolean;
  /** The heaviest screen-share preset its channel allows; every preset without it. */
  readonly maxSharePreset?: SharePresetId;
  /** Id of the join token that admitted it, which settles the seat reserved for it. */
  readonly tokenId?: string;
}

/** An identity's rank: the one its token gave, or moderator for `moderate`, member, or guest. */
export function rankOf(identity: Identity): number {
  if (identity.rank !== undefined) return identity.rank;
  if (identity.grants.has('moderate')) return RANKS.moderator;
  return identity.guest ? RANKS.guest : RANKS.member;
}
