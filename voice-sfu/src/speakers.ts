import type { types } from 'mediasoup';
import type { PeerSink } from './peer';
import { sourceOf } from './sources';

// Tells a channel's participants who speaks.
type Announce = PeerSink['notify'];

/**
 * Who is speaking in a channel: mediasoup's active speaker and audio level observers on its core
 * router, fed with microphones only (a shared tab's audio is not a participant talking).
 */
export class SpeakerObservers {
  readonly #activeSpeaker: types.ActiveSpeakerObserver;
  readonly #audioLevels: types.AudioLevelObserver;
  readonly #announce: Announce;
  #activeSpeakerId: string | null = null;

  private constructor(
    activeSpeaker: types.ActiveSpeakerObserver,
    audioLevels: types.AudioLevelObserver,
    announce: Announce,
  ) {
    this.#activeSpeaker = activeSpeaker;
    this.#audioLevels = audioLevels;
    this.#announce = announce;
    activeSpeaker.on('dominantspeaker', ({ producer }) => {
      const peerId = String(producer.appData.peerId);
      if (peerId === this.#activeSpeakerId) return;
      this.#activeSpeakerId = peerId;
      this.#announce('activeSpeaker', { peerId });
    });
    audioLevels.on('volumes', (volumes) =>
      this.#announce('audioLevels', {
        levels: volumes.map(({ producer, volume }) => ({
          peerId: String(producer.appData.peerId),
          volume,
        })),
      }),
    );
    audioLevels.on('silence', () => this.#announce('audioLevels', { levels: [] }));
  }

  /** Opens both observers on `router`; they close with it. */
  static async open(
    router: types.Router,
    audioLevelIntervalMs: number,
    announce: Announce,
  ): Promise<SpeakerObservers> {
    const activeSpeaker = await router.createActiveSpeakerObserver({ interval: 300 });
    const audioLevels = await router.createAudioLevelObserver({
      maxEntries: 16,
      threshold: -70,
      interval: audioLevelIntervalMs,
    });
    return new SpeakerObservers(activeSpeaker, audioLevels, announce);
  }

  /** Peer id of the current dominant speaker, if any. */
  get activeSpeakerId(): string | null {
    return this.#activeSpeakerId;
  }

  /** Observes a producer on the core router, if it is a microphone. */
  async add(producer: types.Producer): Promise<void> {
    if (sourceOf(producer) !== 'microphone') return;
    await Promise.all([
      this.#activeSpeaker.addProducer({ producerId: producer.id }),
      this.#audioLevels.addProducer({ producerId: producer.id }),
    ]);
  }

  /** A peer left: if it was the dominant speaker, nobody is now. */
  forget(peerId: string): void {
    if (this.#activeSpeakerId !== peerId) return;
    this.#activeSpeakerId = null;
    this.#announce('activeSpeaker', { peerId: null });
  }
}
