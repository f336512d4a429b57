import { AppError } from '@hearth/server-common';

/** A channel known to the control plane, whether or not anyone is in it. */
export interface ChannelRecord {
  /** Unique channel name. */
  readonly name: string;
  /** When it was created. */
  readonly createdAt: Date;
}

/**
 * Where channel records live. This issue keeps them in process; the control-plane issue adds a
 * PostgreSQL implementation behind the same interface.
 */
export interface ChannelDirectory {
  /** Every channel, oldest first. */
  list(): Promise<ChannelRecord[]>;
  /** One channel, if it exists. */
  get(name: string): Promise<ChannelRecord | undefined>;
  /** Creates a channel; throws `conflict` when the name is taken. */
  create(name: string): Promise<ChannelRecord>;
  /** Creates a channel unless it exists, and returns it. */
  ensure(name: string): Promise<ChannelRecord>;
  /** Deletes a channel; throws `not_found` when there is none. */
  delete(name: string): Promise<void>;
}

/** The in-process channel directory of the embedded profile. */
export class InMemoryChannelDirectory implements ChannelDirectory {
  readonly #records = new Map<string, ChannelRecord>();

  async list(): Promise<ChannelRecord[]> {
    return [...this.#records.values()].sort(
      (a, b) => a.createdAt.getTime() - b.createdAt.getTime(),
    );
  }

  async get(name: string): Promise<ChannelRecord | undefined> {
    return this.#records.get(name);
  }

  async create(name: string): Promise<ChannelRecord> {
    if (this.#records.has(name)) throw new AppError('conflict', `channel ${name} already exists`);
    const record = { name, createdAt: new Date() };
    this.#records.set(name, record);
    return record;
  }

  async ensure(name: string): Promise<ChannelRecord> {
    return this.#records.get(name) ?? this.create(name);
  }

  async delete(name: string): Promise<void> {
    if (!this.#records.delete(name)) throw new AppError('not_found', `no channel ${name}`);
  }
}
