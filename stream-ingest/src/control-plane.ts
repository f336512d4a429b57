import type { Rendition } from './hls-types';

/** What the control plane grants a publisher whose key it accepted. */
export interface PublishGrant {
  /** New id of this stream. */
  readonly streamId: string;
  /** Channel it publishes to. */
  readonly channel: string;
  /** Id of the key used, so a rotation or revocation can end the stream. */
  readonly keyId: string;
  /** Object key prefix the stream's playlists and segments go under. */
  readonly storagePrefix: string;
}

/** A change in a stream's life that the ingest node reports. */
export type StreamReport =
  | { readonly kind: 'started'; readonly streamId: string; readonly renditions: Rendition[] }
  | { readonly kind: 'live'; readonly streamId: string }
  | { readonly kind: 'ended'; readonly streamId: string; readonly reason: string };

/**
 * The control plane as the ingest node sees it: the api decides who may publish and learns what
 * runs. In the embedded profile it is the api's own service in the same process.
 */
export interface IngestControlPlane {
  /** Checks a presented stream key; throws an AppError (`forbidden`, `conflict`) to refuse. */
  authorizePublish(streamKey: string, publisher: { ip: string }): Promise<PublishGrant>;
  /** Tells the control plane what happened to a stream. */
  report(report: StreamReport): void;
  /** Calls `listener` with a key id whenever that key is rotated or revoked; returns an unsubscribe. */
  onKeyRevoked(listener: (keyId: string) => void): () => void;
}
