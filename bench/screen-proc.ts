// What bench:screen reads from Linux's /proc: CPU time of processes and of the whole machine, and
// datagrams dropped on UDP sockets. Other people's work shares the machine, so each measured
// window also says how much CPU the rest of the machine used meanwhile.
import fs from 'node:fs';
import os from 'node:os';

// Linux reports CPU times in clock ticks of 1/100 s.
const TICKS_PER_SECOND = 100;

/** One process as /proc/<pid>/stat describes it. */
interface ProcessEntry {
  parent: number;
  name: string;
  cpuSeconds: number;
}

function readStat(pid: number | string): ProcessEntry | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // It exited meanwhile.
  }
  // The name is in parentheses and may hold spaces; the fields after it are plain.
  const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    parent: Number(fields[1]),
    name,
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
  };
}

function processTable(): Map<number, ProcessEntry> {
  const table = new Map<number, ProcessEntry>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(entry);
    if (stat) table.set(Number(entry), stat);
  }
  return table;
}

/** User plus system CPU seconds a process has used. */
export function processCpuSeconds(pid: number): number {
  return readStat(pid)?.cpuSeconds ?? 0;
}

/** CPU seconds used so far by a process and those of its descendants still alive. */
export function treeCpuSeconds(root: number): number {
  const table = processTable();
  let total = 0;
  for (const [pid, entry] of table) {
    for (let at = pid, depth = 0; at > 1 && depth < 32; depth++) {
      if (at === root) {
        total += entry.cpuSeconds;
        break;
      }
      at = table.get(at)?.parent ?? 0;
    }
  }
  return total;
}

/** Children of this process whose name starts with `prefix`. */
export function childProcesses(prefix: string): Set<number> {
  const children = new Set<number>();
  for (const [pid, entry] of processTable()) {
    if (entry.parent === process.pid && entry.name.startsWith(prefix)) children.add(pid);
  }
  return children;
}

/** Busy CPU seconds of all cores together (all but idle and iowait), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  return (total - ticks[3]! - ticks[4]!) / TICKS_PER_SECOND;
}

/** Datagrams the kernel dropped on UDP sockets bound to `ports`, from /proc/net/udp. */
export function udpSocketDrops(ports: readonly number[]): number {
  const wanted = new Set(ports);
  let drops = 0;
  for (const line of fs.readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 13) continue;
    const port = Number.parseInt(fields[1]!.split(':')[1]!, 16);
    if (wanted.has(port)) drops += Number(fields[fields.length - 1]);
  }
  return drops;
}

/**
 * Measures how much CPU the rest of the machine uses over a window: call it at the start, and
 * the function it returns at the end, which gives cores used by processes outside this one and
 * its descendants.
 */
export function foreignCpuMeter(): () => number {
  const busy = machineBusySeconds();
  const ours = treeCpuSeconds(process.pid);
  const started = performance.now();
  return () => {
    const elapsed = (performance.now() - started) / 1000;
    const foreign = machineBusySeconds() - busy - (treeCpuSeconds(process.pid) - ours);
    return Math.max(0, foreign) / elapsed;
  };
}

/** The machine's 1-minute load average. */
export function loadAverage(): number {
  return os.loadavg()[0]!;
}

/**
 * Waits, up to `maxSeconds`, until the 1-minute load average is at most `maxLoad`; returns the
 * seconds waited.
 */
export async function waitForQuiet(maxLoad: number, maxSeconds: number): Promise<number> {
  const started = performance.now();
  while (loadAverage() > maxLoad && performance.now() - started < maxSeconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  return Math.round((performance.now() - started) / 1000);
}
