import { describe, expect, it } from 'vitest';
import type { Grant } from '@hearth/protocol';
import { createPrincipal, type BaseRole } from '../src/auth';
import { canAccessChannel } from '../src/channel-access';
import type { MembershipRecord } from '../src/db/memberships';

const club = { name: 'club', private: true };
const lobby = { name: 'lobby', private: false };

function principal(baseRole: BaseRole, serverGrants: Grant[] = ['join', 'speak']) {
  return createPrincipal({
    userId: baseRole === 'guest' ? 'guest:1' : '7f0c5a52-5a7b-4a43-9a39-2f0c7a4a0c11',
    displayName: 'Ada',
    baseRole,
    serverGrants,
  });
}

function member(channel: string, grants: Grant[]): MembershipRecord[] {
  return [{ channel, grants }];
}

describe('canAccessChannel()', () => {
  it('canAccessChannel() on a public channel is true for everyone, guests included', () => {
    expect(canAccessChannel(principal('guest'), lobby, [])).toBe(true);
    expect(canAccessChannel(principal('member'), lobby, [])).toBe(true);
  });

  it('canAccessChannel() on a private channel is false for an account without a membership in it', () => {
    expect(canAccessChannel(principal('member'), club, [])).toBe(false);
    expect(canAccessChannel(principal('member'), club, member('other', ['join']))).toBe(false);
  });

  it('canAccessChannel() on a private channel needs join in the membership, not elsewhere', () => {
    // Holding join server-wide (every account does by default) does not make a member.
    expect(canAccessChannel(principal('member', ['join']), club, [])).toBe(false);
    expect(canAccessChannel(principal('member'), club, member('club', ['speak']))).toBe(false);
    expect(canAccessChannel(principal('member'), club, member('*', ['join']))).toBe(false);
    expect(canAccessChannel(principal('member'), club, member('club', ['join']))).toBe(true);
  });

  it('canAccessChannel() on a private channel is true for server-wide moderators and admins', () => {
    expect(canAccessChannel(principal('member', ['join', 'moderate']), club, [])).toBe(true);
    expect(canAccessChannel(principal('admin'), club, [])).toBe(true);
    expect(canAccessChannel(principal('operator'), club, [])).toBe(true);
  });

  it('canAccessChannel() on a private channel is false for guests whatever they hold', () => {
    const moderatingGuest = principal('guest', ['join', 'moderate']);
    expect(canAccessChannel(moderatingGuest, club, member('club', ['join']))).toBe(false);
  });
});
