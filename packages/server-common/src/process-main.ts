import { ConfigError } from './config';

/**
 * Runs a service's start-up and, when it fails, prints why (a settings problem as it is, anything
 * else as a start-up failure) and exits with 1. `onStop` runs once on SIGTERM or SIGINT.
 */
export function runService(
  start: () => Promise<{ onStop: (signal: NodeJS.Signals) => Promise<void> }>,
): void {
  start().then(
    ({ onStop }) => {
      let stopping = false;
      const stop = (signal: NodeJS.Signals) => {
        if (stopping) return;
        stopping = true;
        void onStop(signal);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (error: unknown) => {
      process.stderr.write(
        error instanceof ConfigError ? `${error.message}\n` : `start-up failed: ${String(error)}\n`,
      );
      process.exit(1);
    },
  );
}
