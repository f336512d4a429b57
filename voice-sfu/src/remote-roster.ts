import type { Participant, RemoteParticipant } from '@hearth/protocol';

/** A participant served by another node, and the cascade link it came over. */
export interface RemoteEntry {
  readonly participant: Participant;
  readonly linkId: string;
}

/**
 * The participants of a channel that other nodes serve, as their links report them: what the
 * cascade adds to the local roster.
 */
export class RemoteRoster {
  readonly #entries = new Map<string, RemoteEntry>();

  /** Adds or updates a participant; resolves whether it was new. */
  upsert(participant: RemoteParticipant, linkId: string): { view: Participant; isNew: boolean } {
    const view: Participant = {
      id: participant.id,
      displayName: participant.displayName,
      muted: participant.muted,
      deafened: participant.deafened,
      serverMuted: participant.serverMuted,
      guest: participant.guest,
      rank: participant.rank,
      sharing: participant.sharing,
    };
    const isNew = !this.#entries.has(view.id);
    this.#entries.set(view.id, { participant: view, linkId });
    return { view, isNew };
  }

  /** Removes a participant; resolves its entry, if it was known. */
  remove(peerId: string): RemoteEntry | undefined {
    const entry = this.#entries.get(peerId);
    this.#entries.delete(peerId);
    return entry;
  }

  /** Peer ids of every participant that came over a link. */
  peersOf(linkId: string): string[] {
    return [...this.#entries].flatMap(([peerId, entry]) =>
      entry.linkId === linkId ? [peerId] : [],
    );
  }

  /** One participant's entry, if known. */
  get(peerId: string): RemoteEntry | undefined {
    return this.#entries.get(peerId);
  }

  /** Every entry. */
  list(): RemoteEntry[] {
    return [...this.#entries.values()];
  }

  /** Forgets everyone. */
  clear(): void {
    this.#entries.clear();
  }
}
