import { spawn, type ChildProcess } from 'node:child_process';
import { TypedEmitter } from './events';
import type { Logger } from './logger';

/** How restarts of a supervised child are paced. */
export interface RestartBackoff {
  /** Delay before the first restart after a death; it doubles with each death in a row. */
  readonly firstDelayMs: number;
  /** Upper bound of the delay. */
  readonly maxDelayMs: number;
  /** A child that lived this long counts as healthy: its death starts again at the first delay. */
  readonly stableMs: number;
}

/** 250 ms, doubling up to 10 s; reset after 30 s of life. A crash is back within 2 s. */
export const DEFAULT_RESTART_BACKOFF: RestartBackoff = {
  firstDelayMs: 250,
  maxDelayMs: 10_000,
  stableMs: 30_000,
};

/** Events of a supervised child. */
export type SupervisedProcessEvents = {
  /** A child process was spawned. */
  started: [pid: number];
  /** The child said it is ready (`process.send('ready')`). */
  ready: [pid: number];
  /** The child died, after it was ready or before; it is started again after `restartInMs`. */
  died: [
    { code: number | null; signal: NodeJS.Signals | null; restartInMs: number; ready: boolean },
  ];
  /** It died before it was ready three times in a row; nothing is retried. */
  failed: [Error];
};

/** The message a supervised child sends on its IPC channel once it is ready. */
export const READY_MESSAGE = 'ready';

// Start failures in a row (deaths before ready) after which the supervisor gives up: a child
// that cannot start (bad settings, missing binary) would fail the same way forever.
const MAX_START_FAILURES = 3;

// The kernel sends the child this signal when the process that started it dies, even by SIGKILL
// (prctl PR_SET_PDEATHSIG, set by util-linux's setpriv, which Debian always has).
const SETPRIV = '/usr/bin/setpriv';

/**
 * Runs a child process and starts it again whenever it dies, with backoff. A child tells it is
 * ready with `process.send('ready')`; dying before that is a failure to start, and after three in
 * a row the supervisor gives up (`failed`) rather than spin. The child never outlives this
 * process: it runs under `setpriv --pdeathsig SIGTERM`, and `stop()` ends it (SIGTERM, then
 * SIGKILL after a timeout). Secrets go in `env`, never in `args`.
 */
export class SupervisedProcess {
  /** Start, death and failure events. */
  readonly events: TypedEmitter<SupervisedProcessEvents>;
  readonly #name: string;
  readonly #command: string;
  readonly #args: readonly string[];
  readonly #env: NodeJS.ProcessEnv;
  readonly #logger: Logger;
  readonly #backoff: RestartBackoff;
  readonly #stopTimeoutMs: number;
  #child: ChildProcess | undefined;
  #startedAt = 0;
  #ready = false;
  #deathsInRow = 0;
  #startFailures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: {
    /** Name in logs. */
    name: string;
    command: string;
    args: readonly string[];
    env: NodeJS.ProcessEnv;
    logger: Logger;
    backoff?: RestartBackoff;
    /** Time the child gets to exit after SIGTERM before SIGKILL. */
    stopTimeoutMs?: number;
  }) {
    this.#name = options.name;
    this.#command = options.command;
    this.#args = options.args;
    this.#env = options.env;
    this.#logger = options.logger.child({ child: options.name });
    this.#backoff = options.backoff ?? DEFAULT_RESTART_BACKOFF;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 20_000;
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'supervisor listener failed'),
    );
  }

  /** Process id of the running child, if one runs. */
  get pid(): number | undefined {
    return this.#child?.exitCode === null ? this.#child.pid : undefined;
  }

  /** Spawns the child. */
  start(): void {
    if (this.#stopping || this.#child) return;
    this.#startedAt = performance.now();
    this.#ready = false;
    // setpriv execs the command in place, so the IPC channel and the process id carry over.
    const child = spawn(SETPRIV, ['--pdeathsig', 'SIGTERM', '--', this.#command, ...this.#args], {
      env: this.#env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child = child;
    child.once('spawn', () => {
      this.#logger.info({ pid: child.pid }, `${this.#name} started`);
      this.events.safeEmit('started', child.pid!);
    });
    child.on('message', (message) => {
      if (message !== READY_MESSAGE || this.#ready || this.#child !== child) return;
      this.#ready = true;
      this.#startFailures = 0;
      this.events.safeEmit('ready', child.pid!);
    });
    // A failure to spawn setpriv itself ends in an exit event too, handled there.
    child.once('error', (error) => this.#logger.error({ err: error }, `${this.#name} error`));
    child.once('exit', (code, signal) => this.#onExit(child, code, signal));
  }

  /** Stops the child (SIGTERM, then SIGKILL) and starts no other. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Kills the running child with SIGKILL, as a crash would; the supervisor restarts it. */
  kill(): void {
    this.#child?.kill('SIGKILL');
  }

  async #stop(): Promise<void> {
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.#logger.warn(`${this.#name} did not stop in time; killing it`);
      child.kill('SIGKILL');
    }, this.#stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    if (this.#stopping) {
      this.#logger.info({ code, signal }, `${this.#name} stopped`);
      return;
    }
    const livedMs = performance.now() - this.#startedAt;
    const ready = this.#ready;
    if (!ready && ++this.#startFailures >= MAX_START_FAILURES) {
      const error = new Error(
        `${this.#name} failed to start ${MAX_START_FAILURES} times in a row (last: code ${code}, signal ${signal})`,
      );
      this.#logger.fatal({ code, signal }, error.message);
      this.events.safeEmit('failed', error);
      return;
    }
    this.#deathsInRow = livedMs >= this.#backoff.stableMs ? 1 : this.#deathsInRow + 1;
    const restartInMs = Math.min(
      this.#backoff.maxDelayMs,
      this.#backoff.firstDelayMs * 2 ** (this.#deathsInRow - 1),
    );
    this.#logger.error(
      { code, signal, livedMs: Math.round(livedMs), restartInMs, ready },
      ready ? `${this.#name} died; restarting it` : `${this.#name} failed to start; retrying`,
    );
    this.events.safeEmit('died', { code, signal, restartInMs, ready });
    this.#restartTimer = setTimeout(() => this.start(), restartInMs);
  }
}
