import { z } from 'zod';
import { channelNameSchema } from '@hearth/protocol';
import { TypedEmitter, type Logger } from '@hearth/server-common';
import type { ClusterBus } from '../cluster/bus';

/** Bus topic on which every api instance hears screen shares start and end. */
const SHARE_EVENTS_TOPIC = 'voice.shares';

const shareEventSchema = z.object({
  event: z.enum(['shareStarted', 'shareEnded']),
  channel: channelNameSchema,
  peerId: z.string().min(1).max(64),
  displayName: z.string().min(1).max(64),
});

/** A screen share that started or ended in a voice channel. */
export type ShareEvent = z.infer<typeof shareEventSchema>;

/** Events of ShareEvents. */
export type ShareEventsEvents = {
  /** A share started or ended, on any node, as every api instance hears it. */
  share: [event: ShareEvent];
};

/**
 * Screen shares starting and ending, as the voice nodes report them to whichever api instance
 * they are connected to, passed through the cluster bus so every instance can tell its web
 * clients (the events socket): watch pages learn of a share without asking.
 */
export class ShareEvents {
  /** Every share start and end, from every instance. */
  readonly events: TypedEmitter<ShareEventsEvents>;
  readonly #bus: ClusterBus;
  readonly #logger: Logger;
  #unsubscribe: (() => Promise<void>) | undefined;

  constructor(options: { bus: ClusterBus; logger: Logger }) {
    this.#bus = options.bus;
    this.#logger = options.logger.child({ component: 'share-events' });
    this.events = new TypedEmitter((error) =>
      this.#logger.error({ err: error }, 'share event listener failed'),
    );
  }

  /** Starts hearing shares reported through any api instance. */
  async start(): Promise<void> {
    this.#unsubscribe = await this.#bus.subscribe(SHARE_EVENTS_TOPIC, (message) => {
      const parsed = shareEventSchema.safeParse(message);
      if (parsed.success) this.events.safeEmit('share', parsed.data);
      else this.#logger.error('bad share event on the bus');
    });
  }

  /** Tells every instance that a participant started or stopped sharing. */
  announce(event: ShareEvent): void {
    this.#bus.publish(SHARE_EVENTS_TOPIC, event).catch((error: unknown) => {
      this.#logger.warn({ err: error, channel: event.channel }, 'share event not published');
    });
  }

  /** Stops hearing the bus. */
  async close(): Promise<void> {
    await this.#unsubscribe?.();
  }
}
