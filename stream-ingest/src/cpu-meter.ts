import fs from 'node:fs';
import os from 'node:os';

// Linux counts process CPU time in clock ticks of 1/100 s on every common architecture (USER_HZ).
const TICKS_PER_SECOND = 100;

/**
 * The share of the machine's CPUs that this process and the child processes it names used since
 * the previous sample, read from /proc: an ingest node's own work plus its ffmpeg processes.
 */
export class ProcessCpuMeter {
  readonly #cores = Math.max(1, os.availableParallelism());
  #seconds = new Map<number, number>();
  #at = performance.now();

  constructor() {
    this.#seconds.set(process.pid, cpuSeconds(process.pid) ?? 0);
  }

  /** CPU share from 0 to 1 since the last call (or since construction). */
  sample(childPids: readonly number[]): number {
    const now = performance.now();
    const elapsed = (now - this.#at) / 1000;
    const next = new Map<number, number>();
    let used = 0;
    for (const pid of [process.pid, ...childPids]) {
      const seconds = cpuSeconds(pid);
      if (seconds === undefined) continue;
      next.set(pid, seconds);
      // A child first seen now started after the last sample: all of its time is new.
      used += Math.max(0, seconds - (this.#seconds.get(pid) ?? 0));
    }
    this.#seconds = next;
    this.#at = now;
    if (elapsed <= 0) return 0;
    return Math.min(1, used / elapsed / this.#cores);
  }
}

/** User plus system CPU seconds of a process, or undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name in parentheses may hold spaces; fields are counted after its closing ")".
  // utime and stime are fields 14 and 15 of the line (proc(5)), 12th and 13th after the name.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks / TICKS_PER_SECOND : undefined;
}
