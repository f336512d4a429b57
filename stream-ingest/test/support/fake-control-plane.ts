import { randomUUID } from 'node:crypto';
import { AppError } from '@hearth/server-common';
import type { IngestControlPlane, PublishGrant, StreamReport } from '../../src/control-plane';

/**
 * The api as an ingest node sees it, reduced to a table of valid keys: the real control plane is
 * the api's StreamService, tested in api/ and end to end. Here the ingest node alone is on trial.
 */
export class FakeControlPlane implements IngestControlPlane {
  /** Every report received, in order. */
  readonly reports: StreamReport[] = [];
  /** Publish checks made, with their outcome. */
  readonly checks: { accepted: boolean }[] = [];
  readonly #keys = new Map<string, { channel: string; keyId: string }>();
  readonly #revocationListeners = new Set<(keyId: string) => void>();

  /** Makes `key` valid for `channel`. */
  addKey(key: string, channel: string): void {
    this.#keys.set(key, { channel, keyId: `key-${channel}` });
  }

  /** Revokes the key of `channel`, as a rotation through the api would. */
  revoke(channel: string): void {
    for (const listener of this.#revocationListeners) listener(`key-${channel}`);
  }

  /** Grants a known key a new stream; refuses anything else with `forbidden`. */
  async authorizePublish(streamKey: string): Promise<PublishGrant> {
    const entry = this.#keys.get(streamKey);
    this.checks.push({ accepted: entry !== undefined });
    if (!entry) throw new AppError('forbidden', 'unknown or revoked stream key');
    return {
      streamId: randomUUID(),
      channel: entry.channel,
      keyId: entry.keyId,
      storagePrefix: `live/${entry.channel}`,
    };
  }

  /** Records the report. */
  report(report: StreamReport): void {
    this.reports.push(report);
  }

  /** Subscribes to revocations. */
  onKeyRevoked(listener: (keyId: string) => void): () => void {
    this.#revocationListeners.add(listener);
    return () => this.#revocationListeners.delete(listener);
  }
}
