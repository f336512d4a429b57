import { AppError } from '@hearth/server-common';
import { accountIdOf, holdsGrant, type Principal } from './auth';
import type { ChannelDirectory, ChannelRecord } from './channel-directory';
import type { MembershipRecord, MembershipStore } from './db/memberships';

/**
 * Whether a principal may see and use a channel: list it, read it and its stream, join its
 * voice and watch it. Public channels are open to everyone (the routes still check grants).
 * A private channel is open to the operator token and admins, to holders of `moderate`
 * server-wide, and to accounts whose membership in that very channel holds `join`; never to
 * guests. `memberships` are the account's own, as stored: an access token's channel grants leave
 * out what is held server-wide, so they cannot tell a member from a non-member.
 */
export function canAccessChannel(
  principal: Principal,
  channel: Pick<ChannelRecord, 'name' | 'private'>,
  memberships: readonly MembershipRecord[],
): boolean {
  if (!channel.private) return true;
  if (principal.guest) return false;
  if (principal.admin || holdsGrant(principal, 'moderate')) return true;
  return memberships.some(
    (membership) => membership.channel === channel.name && membership.grants.includes('join'),
  );
}

/**
 * Applies `canAccessChannel` for routes and sockets: loads the channel and, only when the rule
 * needs them, the caller's memberships. A private channel the caller may not access answers as
 * if it did not exist, so its name is not confirmed to outsiders.
 */
export class ChannelAccess {
  readonly #channels: ChannelDirectory;
  readonly #memberships: MembershipStore;

  constructor(options: { channels: ChannelDirectory; memberships: MembershipStore }) {
    this.#channels = options.channels;
    this.#memberships = options.memberships;
  }

  /** The channel, or `not_found` when it does not exist or the principal may not access it. */
  async require(principal: Principal, name: string): Promise<ChannelRecord> {
    const record = await this.#channels.get(name);
    if (!record || !(await this.allows(principal, record))) {
      throw new AppError('not_found', `no channel ${name}`);
    }
    return record;
  }

  /**
   * The channel if it exists and the principal may access it; undefined when it does not exist;
   * `not_found` when it is private to others.
   */
  async ifExists(principal: Principal, name: string): Promise<ChannelRecord | undefined> {
    const record = await this.#channels.get(name);
    if (record && !(await this.allows(principal, record))) {
      throw new AppError('not_found', `no channel ${name}`);
    }
    return record;
  }

  /** Whether the principal may access the channel (see `canAccessChannel`). */
  async allows(principal: Principal, channel: ChannelRecord): Promise<boolean> {
    if (canAccessChannel(principal, channel, [])) return true;
    return canAccessChannel(principal, channel, await this.#membershipsOf(principal));
  }

  /** The channels among `records` the principal may access, in their order. */
  async filter(principal: Principal, records: readonly ChannelRecord[]): Promise<ChannelRecord[]> {
    if (records.every((record) => canAccessChannel(principal, record, []))) return [...records];
    const memberships = await this.#membershipsOf(principal);
    return records.filter((record) => canAccessChannel(principal, record, memberships));
  }

  async #membershipsOf(principal: Principal): Promise<MembershipRecord[]> {
    const accountId = accountIdOf(principal);
    return accountId === undefined ? [] : this.#memberships.forUser(accountId);
  }
}
