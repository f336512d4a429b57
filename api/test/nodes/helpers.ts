import { createLogger, type Logger } from '@hearth/server-common';

/** One line a capturing logger received. */
export interface CapturedLog {
  /** pino level number (40 warn, 50 error). */
  readonly level: number;
  /** The message text. */
  readonly message: string;
}

/** A logger that records warnings and errors instead of printing them. */
export function capturingLogger(): { logger: Logger; logs: CapturedLog[] } {
  const logs: CapturedLog[] = [];
  const logger = createLogger('test', {
    level: 'warn',
    hooks: {
      logMethod(args, _method, level) {
        const message = args.find((arg): arg is string => typeof arg === 'string') ?? '';
        logs.push({ level, message });
      },
    },
  });
  return { logger, logs };
}

/** Polls `check` every 10 ms until it returns true; fails after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
