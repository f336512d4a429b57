import type { types } from 'mediasoup';
import { MAX_SHARE_ENCODINGS } from '@hearth/protocol';
import { ShareLayers } from './share-layers';

// Every layer: what a node is taken to want until it says otherwise.
const ALL_LAYERS = Number.MAX_SAFE_INTEGER;

interface Share {
  readonly producer: types.Producer;
  /** For a share sent from this node: how many layers its sharer keeps on. */
  readonly layers: ShareLayers | undefined;
  /** For a share piped in from another node: the link it came over, where wishes go back. */
  readonly originLinkId: string | undefined;
  /** The highest layer each link it goes out on wants, for the viewers behind that link. */
  readonly linkWishes: Map<string, number>;
  /** The wish last sent back over the origin link. */
  sentWish: number | undefined;
}

/**
 * Which simulcast layers of each screen share a channel's viewers want, on this node and behind
 * its cascade links. A share sent from this node hears it through its ShareLayers, which switches
 * unwanted layers off at the sharer; a share piped in from another node sends this node's wish
 * back over its link, so the sharer's node sees every viewer of the channel.
 */
export class ShareDemand {
  readonly #shares = new Map<string, Share>();
  readonly #idleMs: number;
  readonly #localWish: (producerId: string) => number;
  readonly #sendWish: (producerId: string, spatialLayer: number, linkId: string) => void;

  constructor(options: {
    /** How long a layer goes unwanted before its sharer switches it off. */
    idleMs: number;
    /** The highest layer this node's own viewers want of a share, -1 for none. */
    localWish: (producerId: string) => number;
    /** Sends this node's wish for a piped-in share back to the node it came from. */
    sendWish: (producerId: string, spatialLayer: number, linkId: string) => void;
  }) {
    this.#idleMs = options.idleMs;
    this.#localWish = options.localWish;
    this.#sendWish = options.sendWish;
  }

  /** Number of shares in the channel, this node's and those piped in. */
  get size(): number {
    return this.#shares.size;
  }

  /**
   * Follows a share until its producer closes. `tell` reaches the sharer of a share sent from
   * this node; a share piped in names its link in `appData.linkId`.
   */
  track(producer: types.Producer, tell?: (activeLayers: number) => void): void {
    const originLinkId =
      typeof producer.appData.linkId === 'string' ? producer.appData.linkId : undefined;
    const layers =
      tell &&
      new ShareLayers({
        layerCount: producer.rtpParameters.encodings?.length ?? 1,
        idleMs: this.#idleMs,
        tell,
      });
    this.#shares.set(producer.id, {
      producer,
      layers,
      originLinkId,
      linkWishes: new Map(),
      sentWish: undefined,
    });
    producer.observer.once('close', () => {
      layers?.close();
      this.#shares.delete(producer.id);
    });
    this.review(producer.id);
  }

  /** A share now goes out over a link: its viewers there want every layer until they say. */
  linkOpened(producerId: string, linkId: string): void {
    this.#setLinkWish(producerId, linkId, ALL_LAYERS);
  }

  /** The viewers behind a link want layers up to `spatialLayer` of a share (-1: none). */
  linkWished(producerId: string, linkId: string, spatialLayer: number): void {
    if (this.#shares.get(producerId)?.linkWishes.has(linkId))
      this.#setLinkWish(producerId, linkId, spatialLayer);
  }

  /** A share no longer goes out over a link. */
  linkClosed(producerId: string, linkId: string): void {
    const share = this.#shares.get(producerId);
    if (share?.linkWishes.delete(linkId)) this.review(producerId);
  }

  /** Weighs again what a share's viewers want, after one of them changed. */
  review(producerId: string): void {
    const share = this.#shares.get(producerId);
    if (!share) return;
    let wish = this.#localWish(producerId);
    for (const [linkId, linkWish] of share.linkWishes) {
      if (linkId !== share.originLinkId) wish = Math.max(wish, linkWish);
    }
    share.layers?.want(wish);
    if (share.originLinkId !== undefined && wish !== share.sentWish) {
      share.sentWish = wish;
      this.#sendWish(producerId, Math.min(wish, MAX_SHARE_ENCODINGS - 1), share.originLinkId);
    }
  }

  /** Stops every pending switch-off. */
  close(): void {
    for (const share of this.#shares.values()) share.layers?.close();
    this.#shares.clear();
  }

  #setLinkWish(producerId: string, linkId: string, spatialLayer: number): void {
    const share = this.#shares.get(producerId);
    if (!share) return;
    share.linkWishes.set(linkId, spatialLayer);
    this.review(producerId);
  }
}
