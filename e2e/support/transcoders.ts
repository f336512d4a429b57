import fs from 'node:fs';

/**
 * Process ids of the ingest's ffmpeg for a stream, found by its working directory, the stream's
 * work folder (its command line names no stream, and never its key).
 */
export function transcoderPids(streamId: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const cwd = fs.readlinkSync(`/proc/${entry}/cwd`);
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // A zombie has exited; only its parent's bookkeeping is left.
      const zombie = stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
      if (!zombie && cmdline.includes('ffmpeg') && cwd.includes(streamId)) {
        pids.push(Number(entry));
      }
    } catch {
      // The process ended while the list was read.
    }
  }
  return pids;
}
