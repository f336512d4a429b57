import type { types } from 'mediasoup';
import { AppError, type Identity, type Logger } from '@hearth/server-common';
import { Channel } from './channel';
import type { VoiceConfig } from './config';
import type { Peer, PeerSink } from './peer';
import type { WorkerPool } from './worker-pool';

/** The live channels of one node: opens them on first join and forgets them when they close. */
export class ChannelManager {
  readonly #pool: WorkerPool;
  readonly #config: VoiceConfig;
  readonly #logger: Logger;
  readonly #channels = new Map<string, Channel>();
  readonly #opening = new Map<string, Promise<Channel>>();
  readonly #openedListeners: ((channel: Channel) => void)[] = [];

  constructor(pool: WorkerPool, config: VoiceConfig, logger: Logger) {
    this.#pool = pool;
    this.#config = config;
    this.#logger = logger;
    pool.events.on('workerDied', (index) => {
      for (const channel of [...this.#channels.values()]) {
        if (channel.usesWorker(index)) channel.close('worker-died');
      }
    });
  }

  /** The live channel of that name, if it is open. */
  get(name: string): Channel | undefined {
    return this.#channels.get(name);
  }

  /** Every live channel. */
  list(): Channel[] {
    return [...this.#channels.values()];
  }

  /** Joins a channel, opening it first if needed. */
  async join(
    name: string,
    identity: Identity,
    rtpCapabilities: types.RtpCapabilities,
    sink: PeerSink,
    options: { autoResume?: boolean } = {},
  ): Promise<{ channel: Channel; peer: Peer }> {
    if (!identity.grants.has('join')) {
      throw new AppError('forbidden', 'missing the "join" grant for this channel');
    }
    // A channel can close between being opened and being joined (its last peer left); then a
    // fresh one is opened. Two tries cover that race.
    for (let attempt = 0; attempt < 2; attempt++) {
      const channel = await this.#getOrOpen(name);
      if (channel.closed) continue;
      try {
        return { channel, peer: channel.join(identity, rtpCapabilities, sink, options) };
      } catch (error) {
        if (channel.peerCount === 0) channel.close('empty');
        throw error;
      }
    }
    throw new AppError('unavailable', `channel ${name} could not be opened`);
  }

  /** Closes a live channel, telling its peers why. */
  close(name: string, reason: 'deleted' | 'released' = 'deleted'): void {
    this.#channels.get(name)?.close(reason);
  }

  /** The live channel of that name, opened without a peer if needed (a cascade hub). */
  open(name: string): Promise<Channel> {
    return this.#getOrOpen(name);
  }

  /** Events of channels as they open, so the cascade can follow them. */
  onOpened(listener: (channel: Channel) => void): void {
    this.#openedListeners.push(listener);
  }

  /** Closes every channel for shutdown. */
  closeAll(): void {
    for (const channel of [...this.#channels.values()]) channel.close('shutdown');
  }

  // Concurrent first joins share one opening, so a channel never gets two core routers.
  #getOrOpen(name: string): Promise<Channel> {
    const live = this.#channels.get(name);
    if (live) return Promise.resolve(live);
    let opening = this.#opening.get(name);
    if (!opening) {
      opening = Channel.open({ name, pool: this.#pool, config: this.#config, logger: this.#logger })
        .then((channel) => {
          this.#channels.set(name, channel);
          channel.events.once('closed', () => {
            if (this.#channels.get(name) === channel) this.#channels.delete(name);
          });
          for (const listener of this.#openedListeners) listener(channel);
          return channel;
        })
        .finally(() => this.#opening.delete(name));
      this.#opening.set(name, opening);
    }
    return opening;
  }
}
