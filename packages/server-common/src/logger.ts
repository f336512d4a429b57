import { pino, type Logger, type LoggerOptions } from 'pino';

/** The structured JSON logger every service uses. */
export type { Logger };

/** Creates the root logger of a service; children add context such as channel and peer. */
export function createLogger(service: string, options: LoggerOptions = {}): Logger {
  return pino({
    level: 'info',
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...options,
  });
}
