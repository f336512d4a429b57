import type { SqlClient } from './sql-client';
import type { ChannelDirectory } from '../channel-directory';
import type { StreamKeyStore } from '../streams/stream-keys';
import { SqlChannelDirectory } from './channels';
import { MembershipStore } from './memberships';
import { ModerationStore } from './moderation';
import { RefreshTokenStore } from './refresh-tokens';
import { SqlSessionHistory, type SessionHistory } from './session-history';
import { SqlStreamHistory, type StreamHistory } from './stream-history';
import { SqlStreamKeyStore } from './stream-keys';
import { UserStore } from './users';

/** Every store of the control plane, all on one database. */
export interface Stores {
  /** Channel records. */
  readonly channels: ChannelDirectory;
  /** Stream keys (hashed secrets). */
  readonly streamKeys: StreamKeyStore;
  /** Accounts. */
  readonly users: UserStore;
  /** Per-account grants. */
  readonly memberships: MembershipStore;
  /** Hashed refresh tokens. */
  readonly refreshTokens: RefreshTokenStore;
  /** One row per stream. */
  readonly streamHistory: StreamHistory;
  /** One row per voice session. */
  readonly sessions: SessionHistory;
  /** Bans and lasting server mutes. */
  readonly moderation: ModerationStore;
}

/** Builds every store on a migrated database. */
export function createStores(db: SqlClient): Stores {
  return {
    channels: new SqlChannelDirectory(db),
    streamKeys: new SqlStreamKeyStore(db),
    users: new UserStore(db),
    memberships: new MembershipStore(db),
    refreshTokens: new RefreshTokenStore(db),
    streamHistory: new SqlStreamHistory(db),
    sessions: new SqlSessionHistory(db),
    moderation: new ModerationStore(db),
  };
}
