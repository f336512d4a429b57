import { randomBytes } from 'node:crypto';
import type { Logger } from '@hearth/server-common';
import { CoturnProcess, coturnAvailable } from './coturn-process';

/** Realm of the embedded coturn. */
export const EMBEDDED_TURN_REALM = 'hearth';
// Restarts after a death: 250 ms, doubling up to 10 s; three failed starts in a row end it.
const FIRST_RESTART_MS = 250;
const MAX_RESTART_MS = 10_000;
const MAX_START_FAILURES = 3;
// A coturn that lived this long counts as healthy: its death restarts it after the first delay.
const STABLE_MS = 30_000;

/**
 * The embedded profile's TURN server: Debian's coturn on loopback with a secret made for this
 * run, relaying to the voice node on loopback. When coturn dies it is started again on the same
 * port with the same secret (allocations are lost, and clients' transports recover by rejoining
 * with new credentials); it stops with the platform and dies with the process.
 */
export class EmbeddedTurn {
  /** The secret coturn checks credentials with; never logged. */
  readonly secret: string;
  /** TURN URLs handed to clients. */
  readonly urls: readonly string[];
  readonly #logger: Logger;
  #coturn: CoturnProcess;
  #restartTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #deathsInRow = 0;
  #stopped = false;

  private constructor(coturn: CoturnProcess, logger: Logger) {
    this.#coturn = coturn;
    this.#logger = logger;
    this.secret = coturn.settings.secret;
    this.urls = coturn.urls;
    this.#follow(coturn);
  }

  /**
   * Starts coturn on `127.0.0.1:<port>` (0 picks a free port) when it is installed; resolves with
   * undefined when it is not. A coturn that cannot start is an error.
   */
  static async start(options: { port: number; logger: Logger }): Promise<EmbeddedTurn | undefined> {
    const logger = options.logger.child({ component: 'coturn' });
    if (!coturnAvailable()) {
      logger.warn('coturn is not installed: voice clients get no TURN server');
      return undefined;
    }
    const coturn = await CoturnProcess.start(
      {
        listenIp: '127.0.0.1',
        port: options.port === 0 ? undefined : options.port,
        realm: EMBEDDED_TURN_REALM,
        secret: randomBytes(32).toString('hex'),
        // The voice node listens on loopback too. Only processes on this machine reach a coturn
        // that listens on loopback, and they reach loopback peers without it anyway.
        allowLoopbackPeers: true,
      },
      logger,
    );
    logger.info({ urls: coturn.urls, pid: coturn.pid }, 'coturn started');
    return new EmbeddedTurn(coturn, logger);
  }

  /** Process id of the running coturn. */
  get pid(): number {
    return this.#coturn.pid;
  }

  #follow(coturn: CoturnProcess): void {
    const startedAt = Date.now();
    coturn.events.on('died', ({ code, signal }) => {
      if (this.#stopped) return;
      this.#deathsInRow = Date.now() - startedAt >= STABLE_MS ? 1 : this.#deathsInRow + 1;
      const restartInMs = Math.min(MAX_RESTART_MS, FIRST_RESTART_MS * 2 ** (this.#deathsInRow - 1));
      this.#logger.error({ code, signal, restartInMs, log: coturn.log() }, 'coturn died');
      void coturn.stop();
      this.#restartTimer = setTimeout(() => void this.#restart(), restartInMs);
    });
  }

  async #restart(): Promise<void> {
    if (this.#stopped) return;
    const { port, ...settings } = this.#coturn.settings;
    try {
      const coturn = await CoturnProcess.start({ ...settings, port }, this.#logger);
      if (this.#stopped) {
        await coturn.stop();
        return;
      }
      this.#failures = 0;
      this.#coturn = coturn;
      this.#follow(coturn);
      this.#logger.info({ pid: coturn.pid }, 'coturn restarted');
    } catch (error) {
      this.#failures++;
      if (this.#failures >= MAX_START_FAILURES) {
        this.#logger.error({ err: error }, 'coturn failed to start 3 times in a row; TURN is off');
        return;
      }
      const restartInMs = Math.min(MAX_RESTART_MS, FIRST_RESTART_MS * 2 ** this.#failures);
      this.#logger.warn({ err: error, restartInMs }, 'coturn failed to restart; retrying');
      this.#restartTimer = setTimeout(() => void this.#restart(), restartInMs);
    }
  }

  /** Stops coturn and any restart. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    await this.#coturn.stop();
  }
}
