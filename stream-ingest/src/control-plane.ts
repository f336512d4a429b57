import type { PublishGrant, StreamReport } from '@hearth/protocol';

export type { PublishGrant, StreamReport };

/**
 * The control plane as the ingest node sees it: the api decides who may publish and learns what
 * runs. A standalone node reaches it over its control socket (`IngestAgent`); a node inside a
 * test's api process goes through the same hub in process.
 */
export interface IngestControlPlane {
  /** Checks a presented stream key; throws an AppError (`forbidden`, `conflict`) to refuse. */
  authorizePublish(streamKey: string, publisher: { ip: string }): Promise<PublishGrant>;
  /** Tells the control plane what happened to a stream. */
  report(report: StreamReport): void;
  /** Calls `listener` with a key id whenever that key is rotated or revoked; returns an unsubscribe. */
  onKeyRevoked(listener: (keyId: string) => void): () => void;
}
