import os from 'node:os';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ChannelManager } from './channel-manager';
import type { LinkFigures } from './peer-link';
import type { WorkerPool } from './worker-pool';

// Links measured longer ago than this no longer count in the node's loss and bitrate gauges.
const RECENT_LINK_MS = 30_000;

/** Prometheus metrics of a voice-sfu node. */
export interface VoiceMetrics {
  /** Failed join requests by error code. */
  readonly joinErrors: Counter<'code'>;
  /** Refused signaling requests of any method, by error code. */
  readonly errors: Counter<'code'>;
  /** Joins that succeeded. */
  readonly joins: Counter;
  /** How long voice sessions lasted, observed as each ends. */
  readonly sessionSeconds: Histogram;
  /** Worker deaths. */
  readonly workerDeaths: Counter;
  /** Records one participant's report: its latency and jitter. */
  observeLink(figures: LinkFigures): void;
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
  // The sfu_node_* names of the seeds: what a dashboard of SFU nodes reads.
  let lastCpu: { at: number; seconds: number } | undefined;
  new Gauge({
    name: 'sfu_node_cpu_percent',
    help: 'Mean busy share of the mediasoup workers since the previous scrape, in percent',
    registers,
    async collect() {
      const workers = await usage();
      const seconds = workers.reduce((sum, worker) => sum + worker.cpuSeconds, 0);
      const at = performance.now();
      const previous = lastCpu;
      lastCpu = { at, seconds };
      if (!previous || workers.length === 0 || at <= previous.at) return;
      const busy = (seconds - previous.seconds) / ((at - previous.at) / 1000) / workers.length;
      this.set(Math.min(100, Math.max(0, 100 * busy)));
    },
  });
  new Gauge({
    name: 'sfu_node_memory_percent',
    help: "Memory in use on the node's host, in percent",
    registers,
    collect() {
      this.set(100 * (1 - os.freemem() / os.totalmem()));
    },
  });
  new Gauge({
    name: 'sfu_node_connections',
    help: 'WebRTC and plain transports open on the node, pipe transports included',
    registers,
    collect() {
      this.set(pool.loads().reduce((sum, load) => sum + load.transports, 0));
    },
  });
  new Gauge({
    name: 'sfu_node_health',
    help: 'Whether every mediasoup worker of the node runs (1) or one is being replaced (0)',
    registers,
    collect() {
      this.set(pool.slots.length === pool.size ? 1 : 0);
    },
  });
  const workerDeaths = new Counter({
    name: 'voice_worker_deaths_total',
    help: 'mediasoup workers that died and were replaced',
    registers,
  });
  pool.events.on('workerDied', () => workerDeaths.inc());
  const recentLinks = () => {
    const since = Date.now() - RECENT_LINK_MS;
    return channels
      .list()
      .flatMap((channel) => channel.links())
      .filter((link) => Date.parse(link.measuredAt) >= since);
  };
  new Gauge({
    name: 'voice_packet_loss_percent',
    help: 'Mean audio loss of the participants on this node, in or out whichever is worse, from their last reports',
    registers,
    collect() {
      const links = recentLinks();
      this.set(
        links.length === 0 ? 0 : links.reduce((sum, l) => sum + l.lossPercent, 0) / links.length,
      );
    },
  });
  new Gauge({
    name: 'voice_bitrate_kbps',
    help: 'Audio bitrate the participants on this node send, summed, from their last reports',
    registers,
    collect() {
      this.set(recentLinks().reduce((sum, link) => sum + link.outboundKbps, 0));
    },
  });
  const latency = new Histogram({
    name: 'voice_latency_ms',
    help: 'Estimated one-way voice latency per participant report: half the round trip to the SFU plus the jitter buffer',
    buckets: [25, 50, 100, 150, 200, 300, 400, 600, 1000, 2000],
    registers,
  });
  const jitter = new Histogram({
    name: 'voice_jitter_ms',
    help: 'Inbound audio jitter per participant report',
    buckets: [5, 10, 20, 30, 50, 80, 120, 200, 500],
    registers,
  });
  return {
    joinErrors: new Counter({
      name: 'voice_join_errors_total',
      help: 'Join requests that failed, by error code',
      labelNames: ['code'],
      registers,
    }),
    errors: new Counter({
      name: 'voice_errors_total',
      help: 'Signaling requests refused, by error code',
      labelNames: ['code'],
      registers,
    }),
    joins: new Counter({
      name: 'voice_joins_total',
      help: 'Joins of voice channels that succeeded',
      registers,
    }),
    sessionSeconds: new Histogram({
      name: 'voice_session_duration_seconds',
      help: 'How long voice sessions lasted',
      buckets: [10, 60, 300, 900, 1800, 3600, 7200, 14_400, 28_800],
      registers,
    }),
    workerDeaths,
    observeLink(figures) {
      latency.observe(figures.latencyMs);
      jitter.observe(figures.jitterMs);
    },
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
