/** One row of the fault table: what was done, what held, how long recovery took, what was lost. */
export interface FaultRow {
  /** Short name of the scenario. */
  scenario: string;
  /** What the run did. */
  done: string;
  /** What was checked, with the figures. */
  held: string;
  /** Time until service was back, or why none was needed. */
  recovery: string;
  /** "none", or what was lost and how much. */
  dataLost: string;
  /** Every check of the row passed. */
  passed: boolean;
  /** The raw figures, for the JSON file. */
  figures: unknown;
}

/** A scenario of the suite: an id for `--only`, and what runs it. */
export interface FaultScenario {
  /** Id used with `--only=<id>,…`. */
  id: string;
  /** Runs the scenario against real processes and returns its rows. */
  run(options: { short: boolean }): Promise<FaultRow[]>;
}

/** Milliseconds as seconds with one decimal, for the table. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every `intervalMs` until it returns true; resolves with the elapsed ms, or throws. */
export async function timeUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 100,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check().catch(() => false)) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}
