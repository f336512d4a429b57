import { Counter, Gauge, type Registry } from 'prom-client';
import type { ChannelManager } from './channel-manager';
import type { WorkerPool } from './worker-pool';

/** Prometheus metrics of a voice-sfu node. */
export interface VoiceMetrics {
  /** Failed join requests by error code. */
  readonly joinErrors: Counter<'code'>;
  /** Worker deaths. */
  readonly workerDeaths: Counter;
}

/** Registers the voice-sfu metrics; gauges read live state when scraped. */
export function registerVoiceMetrics(
  registry: Registry,
  pool: WorkerPool,
  channels: ChannelManager,
): VoiceMetrics {
  const registers = [registry];
  new Gauge({
    name: 'voice_channels_active',
    help: 'Voice channels open on this node',
    registers,
    collect() {
      this.set(channels.list().length);
    },
  });
  new Gauge({
    name: 'voice_participants',
    help: 'Participants in voice channels on this node',
    registers,
    collect() {
      this.set(channels.list().reduce((sum, channel) => sum + channel.peerCount, 0));
    },
  });
  new Gauge({
    name: 'voice_worker_objects',
    help: 'mediasoup objects per worker, pipe objects included',
    labelNames: ['worker', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const load of pool.loads()) {
        const worker = String(load.index);
        this.set({ worker, kind: 'router' }, load.routers);
        this.set({ worker, kind: 'transport' }, load.transports);
        this.set({ worker, kind: 'producer' }, load.producers);
        this.set({ worker, kind: 'consumer' }, load.consumers);
      }
    },
  });
  const usage = workerUsageSnapshot(pool);
  new Gauge({
    name: 'voice_worker_cpu_seconds',
    help: 'CPU time used by each mediasoup worker (user plus system)',
    labelNames: ['worker'],
    registers,
    async collect() {
      this.reset();
      for (const { index, cpuSeconds } of await usage()) {
        this.set({ worker: String(index) }, cpuSeconds);
      }
    },
  });
  new Gauge({
    name: 'voice_worker_max_rss_bytes',
    help: 'Peak resident memory of each mediasoup worker',
    labelNames: ['worker'],
    registers,
    async collect() {
      this.reset();
      for (const { index, maxRssBytes } of await usage()) {
        this.set({ worker: String(index) }, maxRssBytes);
      }
    },
  });
  const workerDeaths = new Counter({
    name: 'voice_worker_deaths_total',
    help: 'mediasoup workers that died and were replaced',
    registers,
  });
  pool.events.on('workerDied', () => workerDeaths.inc());
  return {
    joinErrors: new Counter({
      name: 'voice_join_errors_total',
      help: 'Join requests that failed, by error code',
      labelNames: ['code'],
      registers,
    }),
    workerDeaths,
  };
}

interface WorkerUsage {
  index: number;
  cpuSeconds: number;
  maxRssBytes: number;
}

// One scrape reads both usage gauges; they share one request per worker instead of two, and a
// reading stays valid for a second.
function workerUsageSnapshot(pool: WorkerPool): () => Promise<WorkerUsage[]> {
  let cached: { at: number; usage: Promise<WorkerUsage[]> } | undefined;
  return () => {
    const now = performance.now();
    if (!cached || now - cached.at > 1000) {
      const usage = Promise.all(
        pool.slots.map(async (slot) => {
          const resources = await slot.worker.getResourceUsage();
          return {
            index: slot.index,
            cpuSeconds: (resources.ru_utime + resources.ru_stime) / 1000,
            maxRssBytes: resources.ru_maxrss * 1024,
          };
        }),
      );
      cached = { at: now, usage };
      // A failed reading is not kept: the next scrape asks again.
      usage.catch(() => {
        if (cached?.usage === usage) cached = undefined;
      });
    }
    return cached.usage;
  };
}
