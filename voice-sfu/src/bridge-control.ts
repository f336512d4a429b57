import type { ApiToNodeMessage, NodeToApiMessage } from '@hearth/protocol';
import { AppError, type Logger } from '@hearth/server-common';
import type { Channel } from './channel';
import type { ChannelManager } from './channel-manager';

type BridgeMessage<T extends string> = Extract<ApiToNodeMessage, { type: T }>;

interface OpenBridge {
  readonly channel: Channel;
  /** The channel's own id of the bridge. */
  readonly localId: string;
}

/**
 * The voice node's part of the api's share bridges: opens a bridge's transports when asked,
 * offers what it will send, connects it once the ingest node answers, and tells the api when a
 * bridge ends on this side (the share stopped, the channel closed).
 */
export class BridgeControl {
  readonly #channels: ChannelManager;
  readonly #send: (message: NodeToApiMessage) => void;
  readonly #sourceAddress: string;
  readonly #logger: Logger;
  // Bridges by the api's id.
  readonly #bridges = new Map<string, OpenBridge>();

  constructor(options: {
    channels: ChannelManager;
    send: (message: NodeToApiMessage) => void;
    /** The address the node sends RTP from. */
    sourceAddress: string;
    logger: Logger;
  }) {
    this.#channels = options.channels;
    this.#send = options.send;
    this.#sourceAddress = options.sourceAddress;
    this.#logger = options.logger.child({ component: 'bridges' });
    options.channels.onOpened((channel) => {
      channel.events.on('bridgeClosed', (localId, reason) => {
        for (const [bridgeId, open] of this.#bridges) {
          if (open.channel !== channel || open.localId !== localId) continue;
          this.#bridges.delete(bridgeId);
          this.#send({ type: 'bridgeClosed', bridgeId, reason: `voice node: ${reason}` });
        }
      });
    });
  }

  /** Handles a bridge message from the api; a failure is reported as the bridge closing. */
  async receive(
    message:
      BridgeMessage<'openBridge'> | BridgeMessage<'connectBridge'> | BridgeMessage<'closeBridge'>,
  ): Promise<void> {
    const bridgeId = message.type === 'openBridge' ? message.route.bridgeId : message.bridgeId;
    try {
      if (message.type === 'openBridge') await this.#open(message);
      else if (message.type === 'connectBridge') await this.#connect(message);
      else this.#close(message.bridgeId);
    } catch (error) {
      this.#logger.warn({ err: error, bridge: bridgeId, type: message.type }, 'bridge step failed');
      this.#close(bridgeId);
      const reason = error instanceof AppError ? error.message : 'the voice node failed';
      this.#send({ type: 'bridgeClosed', bridgeId, reason: reason.slice(0, 200) });
    }
  }

  async #open(message: BridgeMessage<'openBridge'>): Promise<void> {
    const { route } = message;
    if (this.#bridges.has(route.bridgeId)) throw new AppError('conflict', 'the bridge is open');
    const channel = this.#channels.get(message.channel);
    if (!channel) throw new AppError('not_found', `channel ${message.channel} is not on this node`);
    const { bridgeId: localId, offer } = await channel.openBridge(message.peerId, {
      srtp: message.srtp,
    });
    this.#bridges.set(route.bridgeId, { channel, localId });
    this.#send({ type: 'bridgeOffer', route, offer, sourceAddress: this.#sourceAddress });
  }

  async #connect(message: BridgeMessage<'connectBridge'>): Promise<void> {
    const open = this.#bridges.get(message.bridgeId);
    if (!open) throw new AppError('not_found', 'no such bridge on this node');
    await open.channel.connectBridge(open.localId, message.answer);
  }

  #close(bridgeId: string): void {
    const open = this.#bridges.get(bridgeId);
    if (!open) return;
    this.#bridges.delete(bridgeId);
    open.channel.closeBridge(open.localId);
  }
}
