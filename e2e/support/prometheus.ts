import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { freePort } from './voice-nodes';

/** Debian's Prometheus server (package `prometheus`). */
const PROMETHEUS_BIN = '/usr/bin/prometheus';
/** Debian's promtool, from the same package. */
const PROMTOOL_BIN = '/usr/bin/promtool';
/** The folder of the shipped scrape config, alert rules and their unit tests. */
const PROMETHEUS_DEPLOY_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../deploy/prometheus',
);

// Prometheus runs under util-linux's setpriv, which asks the kernel to kill it when the process
// that started it dies, even by SIGKILL: no Prometheus outlives a test run.
const SETPRIV = '/usr/bin/setpriv';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;
// A port found free can be taken before Prometheus binds it; a new port fixes that.
const START_ATTEMPTS = 3;
const MISSING_HINT = 'Debian package `prometheus`: `npm run setup -- --test` installs it';

/** What `promtool` printed and how it exited. */
export interface PromtoolResult {
  /** Exit status; 0 when the check passed. */
  readonly status: number | null;
  /** Standard output and error together. */
  readonly output: string;
}

/** Runs `promtool <args>` in `cwd` (bounded in time) and returns its verdict. */
export function promtool(args: string[], cwd = PROMETHEUS_DEPLOY_DIR): PromtoolResult {
  const result = spawnSync(PROMTOOL_BIN, args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (result.error) {
    throw new Error(`${PROMTOOL_BIN} did not run (${MISSING_HINT})`, { cause: result.error });
  }
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

/** One scrape target of a test config: an address and the labels its series carry. */
export interface ScrapeTarget {
  /** `host:port` serving `/metrics`. */
  readonly address: string;
  /** Extra target labels, such as `node`. */
  readonly labels?: Record<string, string>;
}

/** Where a test Prometheus scrapes, by file_sd file name of the shipped config. */
export type TargetFiles = Record<string, readonly ScrapeTarget[]>;

/**
 * Writes the shipped prometheus.yml and alerts.yml into `dir` for a test: every interval of the
 * scrape config becomes `intervalSeconds` and every rule's `for:` becomes `forSeconds`, so
 * alerts fire within seconds while their expressions stay the shipped ones; `targets` become the
 * file_sd files the config reads. Throws if the shipped files lost what is replaced.
 */
export function writeTestConfig(options: {
  dir: string;
  intervalSeconds: number;
  forSeconds: number;
  targets: TargetFiles;
}): void {
  const config = replaceAll(
    fs.readFileSync(path.join(PROMETHEUS_DEPLOY_DIR, 'prometheus.yml'), 'utf8'),
    /^(\s+(?:scrape_interval|evaluation_interval|scrape_timeout):\s*)\S+$/gm,
    `$1${options.intervalSeconds}s`,
    3,
  );
  const rules = replaceAll(
    fs.readFileSync(path.join(PROMETHEUS_DEPLOY_DIR, 'alerts.yml'), 'utf8'),
    /^(\s+for:\s*)\S+$/gm,
    `$1${options.forSeconds}s`,
    1,
  );
  fs.writeFileSync(path.join(options.dir, 'prometheus.yml'), config);
  fs.writeFileSync(path.join(options.dir, 'alerts.yml'), rules);
  fs.mkdirSync(path.join(options.dir, 'targets'), { recursive: true });
  for (const [file, targets] of Object.entries(options.targets)) {
    // JSON is YAML, and file_sd reads either.
    const groups = targets.map((target) => ({
      targets: [target.address],
      labels: target.labels ?? {},
    }));
    fs.writeFileSync(path.join(options.dir, 'targets', file), JSON.stringify(groups));
  }
}

function replaceAll(text: string, pattern: RegExp, replacement: string, atLeast: number): string {
  const found = text.match(pattern)?.length ?? 0;
  if (found < atLeast) {
    throw new Error(`expected ${atLeast} or more matches of ${pattern}, found ${found}`);
  }
  return text.replace(pattern, replacement);
}

// Every answer of Prometheus's HTTP API: its payload is checked by each call's own schema.
const envelopeSchema = z.object({ status: z.literal('success'), data: z.unknown() });

const labelsSchema = z.record(z.string(), z.string());

/** One active alert, as `GET /api/v1/alerts` lists it. */
const alertSchema = z.object({
  labels: labelsSchema,
  annotations: labelsSchema,
  state: z.enum(['pending', 'firing']),
  value: z.string(),
});

/** One active alert, as `GET /api/v1/alerts` lists it. */
export type PrometheusAlert = z.infer<typeof alertSchema>;

/** One scrape target, as `GET /api/v1/targets` lists it. */
const targetSchema = z.object({
  labels: labelsSchema,
  health: z.enum(['up', 'down', 'unknown']),
  lastError: z.string(),
});

/** One scrape target, as `GET /api/v1/targets` lists it. */
export type PrometheusTarget = z.infer<typeof targetSchema>;

/** One rule, as `GET /api/v1/rules` lists it. */
const ruleSchema = z.object({
  name: z.string(),
  type: z.string(),
  health: z.string(),
  lastError: z.string().optional(),
});

/** One rule, as `GET /api/v1/rules` lists it. */
export type PrometheusRule = z.infer<typeof ruleSchema>;

/** One series of an instant query: its labels and `[unix seconds, "value"]`. */
const instantSeriesSchema = z.object({
  metric: labelsSchema,
  value: z.tuple([z.number(), z.string()]),
});

/** One series of an instant query. */
export type InstantSeries = z.infer<typeof instantSeriesSchema>;

/** One series of a range query: its labels and `[unix seconds, "value"]` samples. */
const rangeSeriesSchema = z.object({
  metric: labelsSchema,
  values: z.array(z.tuple([z.number(), z.string()])),
});

/** One series of a range query. */
export type RangeSeries = z.infer<typeof rangeSeriesSchema>;

/**
 * Debian's Prometheus started on a free loopback port from a config folder, with its data in a
 * fresh temp folder, read through its HTTP API. It dies with the process that started it.
 */
export class PrometheusProcess {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #exit: Promise<void>;
  readonly #dataDir: string;
  #output = '';
  #exited = false;
  #stopping: Promise<void> | undefined;

  private constructor(url: string, child: ChildProcess, dataDir: string) {
    this.url = url;
    this.#child = child;
    this.#dataDir = dataDir;
    this.#exit = new Promise((resolve) =>
      child.once('exit', () => {
        this.#exited = true;
        resolve();
      }),
    );
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => (this.#output += chunk));
  }

  /** Starts Prometheus on `configDir/prometheus.yml`; resolves once it reports ready. */
  static async start(configDir: string): Promise<PrometheusProcess> {
    if (!fs.existsSync(PROMETHEUS_BIN)) throw new Error(`no ${PROMETHEUS_BIN} (${MISSING_HINT})`);
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt += 1) {
      const port = await freePort();
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-prometheus-data-'));
      const child = spawn(
        SETPRIV,
        [
          '--pdeathsig',
          'SIGKILL',
          '--',
          PROMETHEUS_BIN,
          `--config.file=${path.join(configDir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${dataDir}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const prometheus = new PrometheusProcess(`http://127.0.0.1:${port}`, child, dataDir);
      if (await prometheus.#waitUntilReady()) return prometheus;
      const output = prometheus.#output;
      await prometheus.stop();
      lastError = new Error(`prometheus did not start:\n${output}`);
      if (!output.includes('address already in use')) break;
    }
    throw lastError ?? new Error('prometheus did not start');
  }

  async #waitUntilReady(): Promise<boolean> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline && !this.#exited) {
      const ready = await fetch(`${this.url}/-/ready`, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      })
        .then((response) => response.ok)
        .catch(() => false);
      if (ready && !this.#exited) return true;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
  }

  /** What Prometheus logged, for failure reports. */
  get output(): string {
    return this.#output;
  }

  /** Active alerts, pending and firing. */
  async alerts(): Promise<PrometheusAlert[]> {
    return (await this.#get('/api/v1/alerts', z.object({ alerts: z.array(alertSchema) }))).alerts;
  }

  /** Active scrape targets. */
  async targets(): Promise<PrometheusTarget[]> {
    const schema = z.object({ activeTargets: z.array(targetSchema) });
    return (await this.#get('/api/v1/targets', schema)).activeTargets;
  }

  /** Every rule of every group. */
  async rules(): Promise<PrometheusRule[]> {
    const schema = z.object({ groups: z.array(z.object({ rules: z.array(ruleSchema) })) });
    return (await this.#get('/api/v1/rules', schema)).groups.flatMap((group) => group.rules);
  }

  /** An instant query at the current time. */
  async query(query: string): Promise<InstantSeries[]> {
    const params = new URLSearchParams({ query });
    const schema = z.object({
      resultType: z.literal('vector'),
      result: z.array(instantSeriesSchema),
    });
    return (await this.#get(`/api/v1/query?${params}`, schema)).result;
  }

  /** A range query from `start` to `end` (unix seconds) at `stepSeconds`. */
  async queryRange(
    query: string,
    range: { start: number; end: number; stepSeconds: number },
  ): Promise<RangeSeries[]> {
    const params = new URLSearchParams({
      query,
      start: String(range.start),
      end: String(range.end),
      step: String(range.stepSeconds),
    });
    const schema = z.object({
      resultType: z.literal('matrix'),
      result: z.array(rangeSeriesSchema),
    });
    return (await this.#get(`/api/v1/query_range?${params}`, schema)).result;
  }

  async #get<T extends z.ZodType>(pathAndQuery: string, data: T): Promise<z.infer<T>> {
    const response = await fetch(`${this.url}${pathAndQuery}`, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body: unknown = await response.json();
    if (!response.ok)
      throw new Error(`${pathAndQuery}: ${response.status} ${JSON.stringify(body)}`);
    return data.parse(envelopeSchema.parse(body).data);
  }

  /** Stops Prometheus (SIGTERM, then SIGKILL after a timeout) and removes its data. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (!this.#exited) {
      this.#child.kill('SIGTERM');
      const stopped = await Promise.race([
        this.#exit.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STOP_TIMEOUT_MS)),
      ]);
      if (!stopped) {
        this.#child.kill('SIGKILL');
        await this.#exit;
      }
    }
    fs.rmSync(this.#dataDir, { recursive: true, force: true });
  }
}
