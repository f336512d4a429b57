import type { Participant, ParticipantLink, ReplayedSession } from '@hearth/protocol';
import type { Logger } from '@hearth/server-common';
import type { PresenceStore } from './presence';

/** A participant of the node with its channel: one entry of a whole-node presence write. */
interface PresenceEntry {
  readonly channel: string;
  readonly participant: Participant;
}

/**
 * The presence of one node's participants, as its control connection reports them: each change
 * is written as it comes, and the whole set the node replays is kept until a write of it succeeds.
 */
export class NodePresence {
  readonly #store: PresenceStore;
  readonly #logger: Logger;
  /**
   * The node's participants, kept while a presence write failed (the store was out): written
   * whole at the next heartbeat that finds the store back.
   */
  #unsynced: Map<string, PresenceEntry> | undefined;
  /** Counts changes to `#unsynced`: a write that raced one leaves it pending. */
  #changes = 0;
  /** The presence write under way, if any: one at a time per node. */
  #syncing: Promise<void> | undefined;

  constructor(store: PresenceStore, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  /** Writes a participant that joined or changed. */
  upsert(nodeId: string, channel: string, participant: Participant): Promise<void> {
    this.#unsynced?.set(participant.id, { channel, participant });
    this.#changes += 1;
    return this.#store.upsert(nodeId, channel, participant);
  }

  /** Keeps what the node last measured of its participants' links in a channel. */
  putLinks(nodeId: string, channel: string, links: readonly ParticipantLink[]): Promise<void> {
    return this.#store.putLinks(nodeId, channel, links);
  }

  /** Removes a participant that left. */
  remove(nodeId: string, peerId: string): Promise<void> {
    this.#unsynced?.delete(peerId);
    this.#changes += 1;
    return this.#store.remove(nodeId, peerId);
  }

  /** Takes the sessions the node replayed as its whole presence, and starts writing it. */
  replaceAll(nodeId: string, sessions: readonly ReplayedSession[]): void {
    this.#unsynced = new Map(
      sessions.map(({ channel, participant }) => [participant.id, { channel, participant }]),
    );
    this.#changes += 1;
    this.sync(nodeId);
  }

  /**
   * Writes the node's participants whole if they are pending, in the background and one write at
   * a time; when the presence store is out they stay pending, and each heartbeat tries again, so a
   * store that comes back empty is filled again. A change during the write leaves them pending too.
   */
  sync(nodeId: string): void {
    const pending = this.#unsynced;
    if (!pending || this.#syncing) return;
    const changes = this.#changes;
    this.#syncing = this.#store
      .replaceNode(nodeId, [...pending.values()])
      .then(
        () => {
          if (this.#unsynced === pending && this.#changes === changes) {
            this.#unsynced = undefined;
          }
        },
        (error: unknown) => {
          this.#logger.warn({ err: error, node: nodeId }, 'writing presence failed; retrying');
        },
      )
      .finally(() => {
        this.#syncing = undefined;
      });
  }
}
