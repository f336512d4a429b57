import os from 'node:os';
import type { Logger } from '@hearth/server-common';
import type { IngestNode } from '@hearth/stream-ingest';
import type { PlacementService } from './nodes/placement-service';

/**
 * Registers an ingest node running in this process with the node registry and reports its load
 * (live streams, and the machine's load average per core as its CPU, which counts the ffmpeg
 * processes too) every `intervalMs`. Returns the function that stops the reports.
 */
export async function registerIngestNode(options: {
  placement: PlacementService;
  ingest: IngestNode;
  nodeId: string;
  rtmpUrl: string;
  logger: Logger;
  intervalMs?: number;
}): Promise<() => void> {
  const { placement, ingest, nodeId, logger } = options;
  await placement.register({ id: nodeId, kind: 'ingest', rtmpUrl: options.rtmpUrl, limits: {} });
  const report = async () => {
    const cpu = Math.min(1, os.loadavg()[0]! / Math.max(1, os.availableParallelism()));
    await placement.heartbeat(nodeId, { cpu, streams: ingest.liveStreamIds.length });
  };
  await report();
  const timer = setInterval(() => {
    report().catch((error: unknown) => logger.warn({ err: error }, 'ingest load report failed'));
  }, options.intervalMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}
