import type { Participant, ReplayedSession } from '@hearth/protocol';
import type { ShareEvent } from './share-events';

/** Hears that a participant of the node `nodeId` started or stopped sharing. */
export type ShareListener = (event: ShareEvent, nodeId: string) => void;

/**
 * The screen shares of one node's participants. Shares start and end as the node reports its
 * participants: the rest of the api hears each change once.
 */
export class NodeShares {
  readonly #changed: ShareListener;
  /** Peers the node last reported as sharing a screen, with their channel and name. */
  readonly #sharing = new Map<string, { channel: string; displayName: string }>();

  constructor(changed: ShareListener) {
    this.#changed = changed;
  }

  /** Follows a participant the node reported: its share starts or ends if its flag changed. */
  follow(nodeId: string, channel: string, participant: Participant): void {
    if (this.#sharing.has(participant.id) === participant.sharing) return;
    if (!participant.sharing) {
      this.end(nodeId, participant.id);
      return;
    }
    const { id: peerId, displayName } = participant;
    this.#sharing.set(peerId, { channel, displayName });
    this.#changed({ event: 'shareStarted', channel, peerId, displayName }, nodeId);
  }

  /** Ends the share of a peer, if it has one: it stopped sharing, or left. */
  end(nodeId: string, peerId: string): void {
    const share = this.#sharing.get(peerId);
    if (!share) return;
    this.#sharing.delete(peerId);
    this.#changed({ event: 'shareEnded', peerId, ...share }, nodeId);
  }

  /** Takes the sessions the node replayed as all its participants: the shares of others end. */
  replaceAll(nodeId: string, sessions: readonly ReplayedSession[]): void {
    const replayed = new Set(sessions.map(({ peerId }) => peerId));
    for (const peerId of this.#sharing.keys()) {
      if (!replayed.has(peerId)) this.end(nodeId, peerId);
    }
    for (const { channel, participant } of sessions) {
      this.follow(nodeId, channel, participant);
    }
  }
}
