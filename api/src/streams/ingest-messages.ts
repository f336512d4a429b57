import type { ApiToNodeMessage, NodeToApiMessage } from '@hearth/protocol';
import { AppError, type Logger } from '@hearth/server-common';
import type { StreamService } from './stream-service';

/** The messages only ingest nodes send. */
export type IngestToApiMessage = Extract<
  NodeToApiMessage,
  { type: 'authorizePublish' | 'streamReport' | 'streamsReplay' }
>;

/** Types of the messages only ingest nodes send. */
export const INGEST_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'authorizePublish',
  'streamReport',
  'streamsReplay',
]);

/** Types of the messages the api sends ingest nodes only. */
export const INGEST_ONLY_DELIVERIES: ReadonlySet<string> = new Set([
  'publishAuthorized',
  'publishRefused',
  'keyRevoked',
]);

/**
 * Answers ingest nodes on their control connections through the stream service: publish checks,
 * stream reports and the replay after each register. A check that fails for want of the database
 * or the store is refused as `unavailable`, never left unanswered.
 */
export class IngestMessageHandler {
  readonly #streams: StreamService;
  readonly #logger: Logger;

  constructor(options: { streams: StreamService; logger: Logger }) {
    this.#streams = options.streams;
    this.#logger = options.logger.child({ component: 'ingest-messages' });
  }

  /** Handles one message of the node `nodeId`; `reply` answers that node. */
  async handle(
    nodeId: string,
    message: IngestToApiMessage,
    reply: (message: ApiToNodeMessage) => void,
  ): Promise<void> {
    switch (message.type) {
      case 'authorizePublish': {
        try {
          const grant = await this.#streams.authorizePublish(message.streamKey, {
            ip: message.ip,
            nodeId,
          });
          reply({ type: 'publishAuthorized', requestId: message.requestId, grant });
        } catch (error) {
          if (!(error instanceof AppError)) {
            this.#logger.error({ err: error, node: nodeId }, 'publish check failed');
          }
          reply({
            type: 'publishRefused',
            requestId: message.requestId,
            code: error instanceof AppError ? error.code : 'unavailable',
            message: error instanceof AppError ? error.message : 'the check could not be made',
          });
        }
        return;
      }
      case 'streamReport':
        await this.#streams.report(nodeId, message.report);
        return;
      case 'streamsReplay':
        await this.#streams.replay(nodeId, message.streams);
        this.#logger.info({ node: nodeId, streams: message.streams.length }, 'streams replayed');
        return;
    }
  }

  /**
   * The node's control connection dropped at `at`: its streams end (a publisher can republish
   * through another node at once). If the node was only cut off, it replays them when it is back
   * and they go on.
   */
  async disconnected(nodeId: string, at: Date): Promise<void> {
    await this.#streams.nodeGone(nodeId, at);
  }

  /** Ends the streams left open by nodes not in `upNodes`. */
  async reap(upNodes: ReadonlySet<string>): Promise<void> {
    const closed = await this.#streams.closeStreamsOfGoneNodes(upNodes);
    if (closed > 0) this.#logger.warn({ streams: closed }, 'closed the streams of gone nodes');
  }
}
