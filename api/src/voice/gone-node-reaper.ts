import { MAX_RECONNECT_DELAY_MS, type Logger } from '@hearth/server-common';
import type { SessionHistory } from '../db/session-history';
import type { PlacementService } from '../nodes/placement-service';
import type { IngestMessageHandler } from '../streams/ingest-messages';
import type { PresenceStore } from './presence';

/** Default period of the sweep that closes the sessions of nodes no longer up. */
export const DEFAULT_SESSION_REAP_INTERVAL_MS = 30_000;

/**
 * Closes what nodes that are gone left open. A node marked down loses its history rows and its
 * presence at once; a periodic sweep closes the history rows and streams of nodes the registry
 * does not list as up: nodes that died while no api instance watched them.
 */
export class GoneNodeReaper {
  readonly #placement: PlacementService;
  readonly #history: SessionHistory;
  readonly #presence: PresenceStore;
  readonly #ingest: IngestMessageHandler | undefined;
  readonly #logger: Logger;
  readonly #connectedNodeIds: () => Iterable<string>;
  #timer: NodeJS.Timeout | undefined;
  #reaping: Promise<unknown> | undefined;
  #closed = false;

  constructor(options: {
    placement: PlacementService;
    history: SessionHistory;
    presence: PresenceStore;
    ingest: IngestMessageHandler | undefined;
    logger: Logger;
    /** The nodes connected to this api instance: alive, whatever the registry says. */
    connectedNodeIds: () => Iterable<string>;
  }) {
    this.#placement = options.placement;
    this.#history = options.history;
    this.#presence = options.presence;
    this.#ingest = options.ingest;
    this.#logger = options.logger;
    this.#connectedNodeIds = options.connectedNodeIds;
  }

  /**
   * Starts the sweeps, one every `intervalMs`. The first waits until every node still alive has
   * come back to the api that just started: its longest wait between two reconnects, then two node
   * timeouts to register and replay. Sooner, it would end the sessions of a node still waiting.
   */
  start(intervalMs: number): void {
    this.#schedule(MAX_RECONNECT_DELAY_MS + 2 * this.#placement.nodeTimeoutMs, intervalMs);
  }

  /**
   * Closes the open history rows of nodes the registry does not list as up, seen before this
   * pass began, and their streams; resolves with the nodes it closed rows of. Safe on several
   * instances at once.
   */
  async reap(): Promise<string[]> {
    const cutoff = new Date();
    const [nodes, withOpenRows] = await Promise.all([
      this.#placement.nodes(),
      this.#history.nodesWithOpenSessions(),
    ]);
    const up = new Set(nodes.filter((node) => node.status === 'up').map((node) => node.id));
    // A node connected to this instance is alive, whatever the registry says: after Redis came
    // back empty it is listed again only once it has registered again.
    for (const nodeId of this.#connectedNodeIds()) up.add(nodeId);
    const reaped: string[] = [];
    for (const nodeId of withOpenRows.filter((id) => !up.has(id))) {
      // A node registering meanwhile replays its sessions after the cut-off: they stay open.
      const closed = await this.#history.closeNode(nodeId, cutoff, cutoff);
      if (closed > 0) {
        reaped.push(nodeId);
        this.#logger.warn({ node: nodeId, sessions: closed }, 'closed the sessions of a gone node');
      }
    }
    await this.#ingest?.reap(up);
    return reaped;
  }

  /**
   * Closes the history rows and clears the presence of a node marked down at `at`. Every instance
   * hears it and runs the same idempotent clean-up. Sessions the node replays after `at`, once it
   * registers again, are spared; so is its presence if it is back already.
   */
  async nodeDown(nodeId: string, at: number): Promise<void> {
    const downAt = new Date(at);
    await this.#history.closeNode(nodeId, downAt, downAt).catch((error: unknown) => {
      this.#logger.error(
        { err: error, node: nodeId },
        'closing the sessions of a down node failed',
      );
    });
    try {
      const node = await this.#placement.node(nodeId);
      if (node?.status === 'up' && Date.parse(node.registeredAt) >= at) return;
      await this.#presence.removeNode(nodeId);
    } catch (error) {
      this.#logger.error({ err: error, node: nodeId }, 'clearing presence failed');
    }
  }

  /** Stops the sweeps, and waits for the one under way. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#reaping;
  }

  #schedule(delayMs: number, intervalMs: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#reaping = this.reap()
        .catch((error: unknown) => {
          this.#logger.warn({ err: error }, 'closing the sessions of gone nodes failed');
        })
        .finally(() => {
          this.#reaping = undefined;
          this.#schedule(intervalMs, intervalMs);
        });
    }, delayMs);
    // The HTTP server keeps the process alive; this clean-up alone should not.
    this.#timer.unref();
  }
}
