import type { SharePresetId, ShareRouting } from '@hearth/protocol';

/** A channel known to the control plane, whether or not anyone is in it. */
export interface ChannelRecord {
  /** Unique channel name. */
  readonly name: string;
  /** When it was created. */
  readonly createdAt: Date;
  /** Account that created it; null when a guest, the operator or a stream key opened it. */
  readonly createdBy: string | null;
  /** Members only: see `canAccessChannel` in channel-access.ts. */
  readonly private: boolean;
  /** The heaviest screen-share preset its voice participants may use. */
  readonly maxSharePreset: SharePresetId;
  /** How an operator routes the audience of its screen shares. */
  readonly shareRouting: ShareRouting;
}

/** Settings of a channel that its moderators change. */
export interface ChannelSettings {
  /** Members only, or public. */
  readonly private?: boolean;
  /** The heaviest screen-share preset its voice participants may use. */
  readonly maxSharePreset?: SharePresetId;
  /** How an operator routes the audience of its screen shares. */
  readonly shareRouting?: ShareRouting;
}

/** Where channel records live; `SqlChannelDirectory` keeps them in PGlite or PostgreSQL. */
export interface ChannelDirectory {
  /** Every channel oldest first, or one page of them. */
  list(page?: { limit: number; offset: number }): Promise<ChannelRecord[]>;
  /** One channel, if it exists. */
  get(name: string): Promise<ChannelRecord | undefined>;
  /** Creates a channel, noting the account that did; throws `conflict` when the name is taken. */
  create(name: string, createdBy?: string, options?: { private?: boolean }): Promise<ChannelRecord>;
  /** Changes the settings named; throws `not_found` when there is no such channel. */
  update(name: string, settings: ChannelSettings): Promise<ChannelRecord>;
  /** Creates a channel unless it exists, and returns it. */
  ensure(name: string): Promise<ChannelRecord>;
  /** Deletes a channel and the grants given in it; throws `not_found` when there is none. */
  delete(name: string): Promise<void>;
}
