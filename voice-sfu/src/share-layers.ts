/**
 * How many of one share's simulcast layers its viewers need. mediasoup forwards only the layer
 * each consumer wants but the sharer still encodes and sends every layer, so layers nobody has
 * wanted for `idleMs` are switched off at the source, and switched on again at once when a
 * viewer wants them. The lowest layer always stays on, so a new viewer starts at once.
 */
export class ShareLayers {
  readonly #layerCount: number;
  readonly #idleMs: number;
  readonly #tell: (activeLayers: number) => void;
  #active: number;
  #needed: number;
  #lowering: NodeJS.Timeout | undefined;

  constructor(options: {
    /** Encodings the share sends. */
    layerCount: number;
    /** How long a layer goes unwanted before it is switched off. */
    idleMs: number;
    /** Tells the sharer how many of the lowest layers to keep sending. */
    tell: (activeLayers: number) => void;
  }) {
    this.#layerCount = options.layerCount;
    this.#idleMs = options.idleMs;
    this.#tell = options.tell;
    this.#active = options.layerCount;
    this.#needed = options.layerCount;
  }

  /** Layers the sharer is asked to send now. */
  get activeLayers(): number {
    return this.#active;
  }

  /** Takes the highest layer any viewer wants now (-1 for none). */
  want(highestLayer: number): void {
    this.#needed = Math.min(this.#layerCount, Math.max(1, highestLayer + 1));
    if (this.#needed > this.#active) {
      this.#cancelLowering();
      this.#active = this.#needed;
      this.#tell(this.#active);
      return;
    }
    if (this.#needed === this.#active) {
      this.#cancelLowering();
      return;
    }
    this.#lowering ??= setTimeout(() => {
      this.#lowering = undefined;
      if (this.#needed < this.#active) {
        this.#active = this.#needed;
        this.#tell(this.#active);
      }
    }, this.#idleMs);
  }

  /** Stops the pending switch-off. */
  close(): void {
    this.#cancelLowering();
  }

  #cancelLowering(): void {
    clearTimeout(this.#lowering);
    this.#lowering = undefined;
  }
}
