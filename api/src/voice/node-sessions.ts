import type { NodeToApiMessage, ReplayedSession } from '@hearth/protocol';
import type { Logger } from '@hearth/server-common';
import type { LiveSession, SessionHistory } from '../db/session-history';

// After a history write failed (the database was out), the node's history is written again
// whole, on a heartbeat, at most this often.
const RESYNC_INTERVAL_MS = 2000;

/** A voice session the node reported: its history row, and when it was seen live. */
interface TrackedSession {
  readonly id: string;
  readonly seenAt: Date;
}

/**
 * The session history of one node's peers, as its control connection reports them. Session
 * history is written in the background: a slow database never holds up the node.
 */
export class NodeSessions {
  readonly #history: SessionHistory;
  readonly #logger: Logger;
  /** Open voice sessions of the node's participants: history rows by peer id. */
  readonly #rows = new Map<string, Promise<TrackedSession | undefined>>();
  /** The node's live sessions as it reported them, by peer id: what a resync writes. */
  #live = new Map<string, LiveSession>();
  /** Set when a history write failed: the history may not match `#live` until a resync. */
  #stale = false;
  /** When the last resync started (epoch milliseconds), to space them out. */
  #resyncedAt = 0;

  constructor(history: SessionHistory, logger: Logger) {
    this.#history = history;
    this.#logger = logger;
  }

  /** The account of a live peer of the node, if the node reported one. */
  userIdOf(peerId: string): string | undefined {
    return this.#live.get(peerId)?.userId;
  }

  /** Opens the history row of a peer that joined. */
  open(nodeId: string, message: Extract<NodeToApiMessage, { type: 'sessionOpened' }>): void {
    const joinedAt = new Date();
    this.#live.set(message.peerId, {
      peerId: message.peerId,
      channel: message.channel,
      userId: message.userId,
      displayName: message.displayName,
    });
    const opened = this.#history
      .open({
        userId: message.userId,
        displayName: message.displayName,
        channel: message.channel,
        nodeId,
        peerId: message.peerId,
        joinedAt,
      })
      .then(
        (id): TrackedSession => ({ id, seenAt: joinedAt }),
        (error: unknown) => {
          this.#stale = true;
          this.#logger.error({ err: error, node: nodeId }, 'recording a voice session failed');
          return undefined;
        },
      );
    this.#rows.set(message.peerId, opened);
  }

  /** Closes the history row of a peer that left, once it is open. */
  close(peerId: string): void {
    this.#live.delete(peerId);
    const opened = this.#rows.get(peerId);
    if (!opened) return;
    this.#rows.delete(peerId);
    const leftAt = new Date();
    void opened.then(async (session) => {
      if (session === undefined) return;
      // If the node replayed the session to another instance since (this connection was cut and
      // it reconnected there), the row is that instance's now and stays open.
      await this.#history
        .close(session.id, leftAt, { seenUpTo: session.seenAt })
        .catch((error: unknown) => {
          this.#stale = true;
          this.#logger.error({ err: error }, 'closing a voice session failed');
        });
    });
  }

  /** Closes the history rows of every peer: the node is gone or cut off. */
  closeAll(): void {
    for (const peerId of [...this.#rows.keys()]) this.close(peerId);
  }

  /**
   * Takes the sessions the node replayed as its whole live set and writes them: the replay is the
   * truth about the node, its history rows become exactly what it serves now.
   */
  replaceLive(nodeId: string, sessions: readonly ReplayedSession[]): void {
    this.#live = new Map(
      sessions.map(({ peerId, channel, userId, participant }) => [
        peerId,
        { peerId, channel, userId, displayName: participant.displayName },
      ]),
    );
    this.#writeLive(nodeId);
  }

  /**
   * Writes the node's live set whole again if a history write failed while the node kept
   * reporting, at most every two seconds: once the database answers again, this also closes the
   * rows of peers that left meanwhile.
   */
  resyncIfStale(nodeId: string): void {
    const now = Date.now();
    if (!this.#stale || now - this.#resyncedAt < RESYNC_INTERVAL_MS) return;
    this.#resyncedAt = now;
    this.#writeLive(nodeId);
  }

  // Writes the node's whole live set to history: rows of live peers stay or open, the node's
  // other rows close. Closes of peers that leave meanwhile wait for it, through their entry.
  #writeLive(nodeId: string): void {
    const at = new Date();
    const live = [...this.#live.values()];
    const rows = this.#history.replay(nodeId, live, at).then(
      (ids) => {
        this.#stale = false;
        return ids;
      },
      (error: unknown) => {
        this.#stale = true;
        this.#logger.error({ err: error, node: nodeId }, 'writing voice sessions failed');
        return undefined;
      },
    );
    for (const peerId of [...this.#rows.keys()]) {
      // The write closes the rows of peers it leaves out.
      if (!this.#live.has(peerId)) this.#rows.delete(peerId);
    }
    for (const { peerId } of live) {
      this.#rows.set(
        peerId,
        rows.then((ids) => {
          const id = ids?.get(peerId);
          return id === undefined ? undefined : { id, seenAt: at };
        }),
      );
    }
  }
}
