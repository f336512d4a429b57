import type { Participant, VoiceNotificationData } from '@hearth/protocol';
import { TypedEmitter } from './emitter';
import type { SignalingClient } from './signaling';

/** Who is in a channel, and who speaks. Each change produces a new object. */
export interface RosterState {
  /** Everyone in the channel, in the order they joined. */
  participants: readonly Participant[];
  /** The dominant speaker, if any. */
  activeSpeakerId: string | null;
  /** Peers heard within the last half second. */
  speaking: ReadonlySet<string>;
}

/** Events of a roster. */
export type RosterEvents = {
  /** The roster changed; the argument is the new state. */
  change: [RosterState];
  /** The server announced a participant who joined or changed, such as one muted or sharing. */
  participantPut: [Participant];
};

// A peer counts as speaking while its last audio level report is this recent.
const SPEAKING_WINDOW_MS = 500;

/**
 * The roster of one join: it starts from the participants the join response lists and follows
 * the server's roster, speaker and audio level notifications until `clear()`. A speaking
 * indicator clears on time even when no more level reports arrive.
 */
export class Roster {
  /** Changes, and participants the server announced. */
  readonly events = new TypedEmitter<RosterEvents>();
  readonly #participants = new Map<string, Participant>();
  readonly #lastHeard = new Map<string, number>();
  #unsubscribe: (() => void)[] = [];
  #speakingTimer: ReturnType<typeof setTimeout> | null = null;
  #state: RosterState = { participants: [], activeSpeakerId: null, speaking: new Set() };

  /** The current roster. */
  get state(): RosterState {
    return this.#state;
  }

  /**
   * Starts over from a join's `participants` and `activeSpeakerId`, and follows `signaling`'s
   * notifications from now on.
   */
  follow(
    signaling: SignalingClient,
    joined: { participants: readonly Participant[]; activeSpeakerId: string | null },
  ): void {
    this.clear();
    for (const participant of joined.participants) {
      this.#participants.set(participant.id, participant);
    }
    this.#update({
      participants: [...this.#participants.values()],
      activeSpeakerId: joined.activeSpeakerId,
    });
    this.#unsubscribe = [
      signaling.onNotification('participantJoined', ({ participant }) => this.#put(participant)),
      signaling.onNotification('participantUpdated', ({ participant }) => this.#put(participant)),
      signaling.onNotification('participantLeft', ({ peerId }) => this.#remove(peerId)),
      signaling.onNotification('activeSpeaker', ({ peerId }) => {
        this.#update({ activeSpeakerId: peerId });
      }),
      signaling.onNotification('audioLevels', (data) => this.#onAudioLevels(data)),
    ];
  }

  /** Forgets everyone and stops following notifications. */
  clear(): void {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    this.#participants.clear();
    this.#lastHeard.clear();
    if (this.#speakingTimer) clearTimeout(this.#speakingTimer);
    this.#speakingTimer = null;
    this.#update({ participants: [], activeSpeakerId: null, speaking: new Set() });
  }

  #put(participant: Participant): void {
    this.#participants.set(participant.id, participant);
    this.#update({ participants: [...this.#participants.values()] });
    this.events.safeEmit('participantPut', participant);
  }

  #remove(peerId: string): void {
    this.#participants.delete(peerId);
    this.#lastHeard.delete(peerId);
    this.#update({ participants: [...this.#participants.values()] });
    this.#refreshSpeaking();
  }

  #onAudioLevels({ levels }: VoiceNotificationData<'audioLevels'>): void {
    const now = performance.now();
    for (const { peerId } of levels) this.#lastHeard.set(peerId, now);
    this.#refreshSpeaking();
  }

  // Recomputes who is speaking and wakes up again when the next of them falls silent.
  #refreshSpeaking(): void {
    const now = performance.now();
    const speaking = new Set<string>();
    let nextExpiry = Infinity;
    for (const [peerId, heardAt] of this.#lastHeard) {
      const age = now - heardAt;
      if (age < SPEAKING_WINDOW_MS) {
        speaking.add(peerId);
        nextExpiry = Math.min(nextExpiry, SPEAKING_WINDOW_MS - age);
      } else {
        this.#lastHeard.delete(peerId);
      }
    }
    if (this.#speakingTimer) clearTimeout(this.#speakingTimer);
    this.#speakingTimer = Number.isFinite(nextExpiry)
      ? setTimeout(() => this.#refreshSpeaking(), Math.ceil(nextExpiry))
      : null;
    if (!sameMembers(speaking, this.#state.speaking)) this.#update({ speaking });
  }

  #update(patch: Partial<RosterState>): void {
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('change', this.#state);
  }
}

function sameMembers(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
