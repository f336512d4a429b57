import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { nodeListSchema } from '@hearth/protocol';
import { ensureChannel, operator } from '../api/test/support/accounts';
import { startTestApi, TestSignalingClient, type TestApi } from '../api/test/support/server';
import { hearthState, launchChromium } from './support/browser';
import { UdpImpairmentRelay } from './support/impairment';
import { IngestNodeProcess } from './support/ingest-node';
import { publishLikeObs } from './support/obs';
import {
  PrometheusProcess,
  promtool,
  writeTestConfig,
  type PrometheusAlert,
} from './support/prometheus';
import {
  freePort,
  freeRelayedRtcPorts,
  startVoiceNodeProcess,
  type VoiceNodeProcess,
} from './support/voice-nodes';
import { eventually } from './support/wait';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const webDistDir = path.join(repoRoot, 'web/dist');
const GRAFANA_DIR = path.join(repoRoot, 'deploy/grafana');
const clusterSecret = 'e2e-alerts-cluster-secret-0123456789abcdef0123456789';
// Voice nodes bind their media port here...
const NODE_IP = '127.0.0.1';
// ...and announce this address, where each node's impairment relay listens on the same port: a
// page's media reaches its node only through the relay.
const RELAY_IP = '127.0.0.2';
// The test's Prometheus scrapes and evaluates every second, and every rule's `for:` is this
// short, so alerts fire within seconds; the expressions are the shipped ones.
const INTERVAL_SECONDS = 1;
const FOR_SECONDS = 3;
// Grafana fills `$__rate_interval` from the scrape interval; at 1 s scrapes, 10 s holds samples.
const RATE_INTERVAL = '10s';
const SHIPPED_ALERTS = [
  'HighCPUUsage',
  'HighErrorRate',
  'HighPacketLoss',
  'HighVoiceLatency',
  'IngestNodeDown',
  'SFUNodeDown',
  'TooManyErrors',
  'TranscodeBehindRealtime',
  'UploadBacklogGrowing',
  'WorkerDied',
];

/** A voice-sfu process and the relay in front of its media port. */
interface RelayedVoiceNode {
  process: VoiceNodeProcess;
  relay: UdpImpairmentRelay;
}

let workDir: string;
let startedAt: number;
let api: TestApi;
let ingest: IngestNodeProcess;
let prometheus: PrometheusProcess;
let browser: Browser;
let publisher: ChildProcess | undefined;
const voiceNodes = new Map<string, RelayedVoiceNode>();
const contexts: BrowserContext[] = [];
// The voice node serving the page of the loss test; the other one is killed at the end.
let pageNodeId: string | undefined;

// The dashboard's JSON, as far as this test reads it.
const dashboardSchema = z.object({
  uid: z.string(),
  title: z.string(),
  panels: z.array(
    z.object({
      type: z.string(),
      title: z.string(),
      datasource: z.object({ type: z.string(), uid: z.string() }).optional(),
      targets: z
        .array(
          z.object({
            refId: z.string(),
            expr: z.string(),
            datasource: z.object({ type: z.literal('prometheus'), uid: z.string() }),
          }),
        )
        .optional(),
    }),
  ),
});

function readDashboard() {
  const file = path.join(GRAFANA_DIR, 'dashboards/hearth.json');
  return dashboardSchema.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
}

async function startRelayedVoiceNode(id: string, port: number): Promise<RelayedVoiceNode> {
  const rtcPort = await freeRelayedRtcPorts(NODE_IP, RELAY_IP);
  const voice = await startVoiceNodeProcess({
    id,
    apiUrl: api.baseUrl,
    clusterSecret,
    port,
    env: {
      VOICE_LISTEN_IP: NODE_IP,
      VOICE_ANNOUNCED_ADDRESS: RELAY_IP,
      VOICE_RTC_BASE_PORT: String(rtcPort),
    },
  });
  const relay = await UdpImpairmentRelay.start({
    target: { host: NODE_IP, port: rtcPort },
    listenHost: RELAY_IP,
    listenPort: rtcPort,
    seed: 11,
  });
  return { process: voice, relay };
}

async function upNodes(): Promise<string[]> {
  const response = await fetch(`${api.baseUrl}/api/nodes`, { headers: operator() });
  const { nodes } = nodeListSchema.parse(await response.json());
  return nodes.filter((node) => node.status === 'up').map((node) => node.id);
}

async function openGuest(name: string, channel: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${channel}?name=${encodeURIComponent(name)}&autojoin=1`);
  await eventually(
    async () => (await hearthState(page))?.connection === 'connected',
    20_000,
    `${name} connected`,
  );
  return page;
}

// Which node serves a page, from its test hook.
function nodeOf(page: Page): Promise<string | null> {
  return page.evaluate(() =>
    (globalThis as unknown as { __hearth: { nodeId(): string | null } }).__hearth.nodeId(),
  );
}

async function active(alertname: string): Promise<PrometheusAlert[]> {
  return (await prometheus.alerts()).filter((alert) => alert.labels.alertname === alertname);
}

async function firingFor(alertname: string, node: string): Promise<boolean> {
  return (await active(alertname)).some((a) => a.state === 'firing' && a.labels.node === node);
}

beforeAll(async () => {
  startedAt = Math.floor(Date.now() / 1000);
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-alerts-'));
  const voicePorts = new Map([
    ['voice-a', await freePort()],
    ['voice-b', await freePort()],
  ]);
  api = await startTestApi({
    api: {
      webDistDir,
      allowedOrigins: [...voicePorts.values()].map((port) => `http://127.0.0.1:${port}`).join(','),
      embeddedVoice: 'false',
      clusterSecret,
      nodeTimeoutMs: '1500',
      sweepIntervalMs: '250',
    },
  });
  const started = await Promise.all(
    [...voicePorts].map(async ([id, port]) => [id, await startRelayedVoiceNode(id, port)] as const),
  );
  for (const [id, node] of started) voiceNodes.set(id, node);
  ingest = await IngestNodeProcess.start({
    nodeId: 'ingest-1',
    apiUrl: api.baseUrl,
    clusterSecret,
    workDir: path.join(workDir, 'ingest'),
    env: { INGEST_STORAGE: 'local', INGEST_LOCAL_STORAGE_DIR: path.join(workDir, 'hls') },
  });
  await eventually(
    async () => (await upNodes()).sort().join() === 'ingest-1,voice-a,voice-b',
    20_000,
    'every node registered',
  );
  const configDir = path.join(workDir, 'prometheus');
  fs.mkdirSync(configDir);
  writeTestConfig({
    dir: configDir,
    intervalSeconds: INTERVAL_SECONDS,
    forSeconds: FOR_SECONDS,
    targets: {
      'api.yml': [{ address: new URL(api.baseUrl).host }],
      'voice-nodes.yml': [...voiceNodes].map(([id, node]) => ({
        address: `127.0.0.1:${node.process.port}`,
        labels: { node: id },
      })),
      'ingest-nodes.yml': [
        { address: `127.0.0.1:${ingest.httpPort}`, labels: { node: ingest.nodeId } },
      ],
    },
  });
  prometheus = await PrometheusProcess.start(configDir);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  publisher?.kill('SIGKILL');
  for (const context of contexts) await context.close();
  await browser?.close();
  await prometheus?.stop();
  for (const { process, relay } of voiceNodes.values()) {
    await relay.close();
    await process.stop();
  }
  ingest?.kill('SIGKILL');
  await ingest?.exited();
  await api?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('deploy/: Prometheus alerts and the Grafana dashboard on a real platform', () => {
  it('promtool passes the shipped scrape config, the alert rules and their unit tests, and the config as the test templates it', () => {
    for (const args of [
      ['check', 'config', 'prometheus.yml'],
      ['check', 'rules', 'alerts.yml'],
      ['test', 'rules', 'alerts.test.yml'],
    ]) {
      const result = promtool(args);
      expect(result.status, `promtool ${args.join(' ')}:\n${result.output}`).toBe(0);
    }
    const templated = promtool(
      ['check', 'config', 'prometheus.yml'],
      path.join(workDir, 'prometheus'),
    );
    expect(templated.status, templated.output).toBe(0);
  });

  it('the provisioned dashboard has the seeds’ panels, every query reading the provisioned datasource', () => {
    const datasource = fs.readFileSync(
      path.join(GRAFANA_DIR, 'provisioning/datasources/hearth-prometheus.yml'),
      'utf8',
    );
    const uid = /^\s+uid:\s*(\S+)$/m.exec(datasource)?.[1];
    expect(uid).toBe('hearth-prometheus');
    const provider = fs.readFileSync(
      path.join(GRAFANA_DIR, 'provisioning/dashboards/hearth.yml'),
      'utf8',
    );
    expect(provider).toMatch(/^\s+path:\s*\S+$/m);
    const dashboard = readDashboard();
    const targets = dashboard.panels.flatMap((panel) => panel.targets ?? []);
    expect(new Set(targets.map((target) => target.datasource.uid))).toEqual(new Set([uid]));
    const queriesOf = (title: string) =>
      dashboard.panels
        .filter((panel) => panel.title === title)
        .flatMap((panel) => (panel.targets ?? []).map((target) => target.expr))
        .join('\n');
    const seeds: [string, RegExp[]][] = [
      [
        'Voice latency p50 / p95 / p99',
        [0.5, 0.95, 0.99].map(
          (q) =>
            new RegExp(
              `histogram_quantile\\(${q}, sum by \\(le\\) \\(rate\\(voice_latency_ms_bucket`,
            ),
        ),
      ],
      ['Active users', [/voice_participants/]],
      ['SFU load per node', [/sfu_node_cpu_percent/, /sfu_node_memory_percent/]],
      ['Error rate', [/api_http_requests_total\{[^}]*status_class="5xx"/, /voice_errors_total/]],
      ['Packet loss and jitter', [/voice_packet_loss_percent/, /voice_jitter_ms_bucket/]],
      ['Live streams and transcode speed', [/ingest_live_streams/, /ingest_transcode_speed/]],
      ['Upload latency', [/histogram_quantile\(.*ingest_upload_seconds_bucket/]],
    ];
    for (const [title, patterns] of seeds) {
      for (const pattern of patterns) expect(queriesOf(title), title).toMatch(pattern);
    }
  });

  it('Prometheus scrapes the api, both voice nodes and the ingest node, and evaluates every shipped alert without error', async () => {
    await eventually(
      async () => {
        const targets = await prometheus.targets();
        return targets.length === 4 && targets.every((target) => target.health === 'up');
      },
      15_000,
      'every target up',
    );
    const targets = await prometheus.targets();
    expect(targets.map((t) => `${t.labels.job} ${t.labels.node ?? ''}`.trim()).sort()).toEqual([
      'hearth-api',
      'hearth-ingest ingest-1',
      'hearth-voice voice-a',
      'hearth-voice voice-b',
    ]);
    await eventually(
      async () => (await prometheus.rules()).every((rule) => rule.health === 'ok'),
      15_000,
      'every rule evaluated',
    );
    const rules = await prometheus.rules();
    expect(rules.map((rule) => rule.name).sort()).toEqual(SHIPPED_ALERTS);
    expect(rules.filter((rule) => rule.type !== 'alerting')).toEqual([]);
    // A healthy platform fires nothing.
    expect(await prometheus.alerts()).toEqual([]);
  });

  it('40 % loss on the relay in front of a page fires HighPacketLoss for its node alone, and the alert ends with the loss', async () => {
    const channel = 'alerts';
    await ensureChannel(api.baseUrl, channel);
    const page = await openGuest('Lossy', channel);
    const nodeId = await nodeOf(page);
    expect(voiceNodes.has(nodeId!)).toBe(true);
    pageNodeId = nodeId!;
    const { relay } = voiceNodes.get(pageNodeId)!;
    // The page's media goes through the relay, and its reports reach Prometheus.
    await eventually(
      async () => relay.stats().upstream.packetsIn > 50,
      10_000,
      'media through the relay',
    );
    await eventually(
      async () =>
        (await prometheus.query(`voice_latency_ms_count{node="${nodeId}"} > 0`)).length > 0,
      15_000,
      'a statistics report scraped',
    );
    expect(await active('HighPacketLoss')).toEqual([]);

    relay.set({ lossPercent: 40 });
    await eventually(
      async () => firingFor('HighPacketLoss', pageNodeId!),
      45_000,
      `HighPacketLoss firing for ${pageNodeId}`,
    );
    const alerts = await active('HighPacketLoss');
    expect(alerts.map((alert) => alert.labels.node)).toEqual([pageNodeId]);
    expect(alerts[0]!.labels.severity).toBe('warning');
    expect(Number(alerts[0]!.value)).toBeGreaterThan(5);
    expect(alerts[0]!.annotations.summary).toContain(
      `127.0.0.1:${voiceNodes.get(pageNodeId)!.process.port}`,
    );
    expect(relay.stats().upstream.dropped.random).toBeGreaterThan(0);

    relay.set({ lossPercent: 0 });
    await eventually(
      async () => (await active('HighPacketLoss')).length === 0,
      30_000,
      'HighPacketLoss over once the loss ends',
    );
  }, 120_000);

  it('with a stream, a refused signaling request, a failed join and a finished session, every query of the Grafana dashboard returns data', async () => {
    const { streamKey } = await api.streams.createKey('alerts-stream');
    publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${ingest.rtmpPort}/live/${streamKey}`,
      seconds: 60,
      width: 320,
      height: 180,
      fps: 15,
    });
    const client = await TestSignalingClient.connect(api.baseUrl, 'Errors', {
      channel: 'alerts-errors',
    });
    const refused = await client.request('createTransport', { direction: 'send' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'not_joined' } });
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    const join = { channel: 'alerts-errors', rtpCapabilities: caps.data.rtpCapabilities };
    expect(await client.request('join', join)).toMatchObject({ ok: true });
    // A join the node refuses once it ran (bad data is refused before, and is no failed join).
    expect(await client.request('join', join)).toMatchObject({
      ok: false,
      error: { code: 'already_joined' },
    });
    client.close();

    const dashboard = readDashboard();
    const queries = dashboard.panels.flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({
        panel: panel.title,
        refId: target.refId,
        expr: target.expr.replaceAll('$__rate_interval', RATE_INTERVAL),
      })),
    );
    expect(queries.length).toBeGreaterThanOrEqual(20);
    // Only the variable above is used: anything else would reach Prometheus unexpanded.
    expect(queries.filter((query) => query.expr.includes('$'))).toEqual([]);
    const withoutData = async () => {
      const end = Math.ceil(Date.now() / 1000);
      const missing: string[] = [];
      for (const query of queries) {
        const series = await prometheus.queryRange(query.expr, {
          start: startedAt,
          end,
          stepSeconds: INTERVAL_SECONDS,
        });
        const finite = series.some((s) =>
          s.values.some(([, value]) => Number.isFinite(Number(value))),
        );
        if (!finite) missing.push(`${query.panel} ${query.refId}: ${query.expr}`);
      }
      return missing;
    };
    let missing = await withoutData();
    const deadline = Date.now() + 45_000;
    while (missing.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      missing = await withoutData();
    }
    expect(missing).toEqual([]);
  }, 90_000);

  it('killing a voice node and the ingest node fires SFUNodeDown and IngestNodeDown for them, and SFUNodeDown not for the node still up', async () => {
    publisher?.kill('SIGKILL');
    const killedId = [...voiceNodes.keys()].find((id) => id !== pageNodeId)!;
    await voiceNodes.get(killedId)!.process.kill();
    ingest.kill('SIGKILL');
    await ingest.exited();
    await eventually(
      async () =>
        (await firingFor('SFUNodeDown', killedId)) &&
        (await firingFor('IngestNodeDown', ingest.nodeId)),
      30_000,
      'SFUNodeDown and IngestNodeDown firing',
    );
    const down = await active('SFUNodeDown');
    expect(down.map((alert) => alert.labels.node)).toEqual([killedId]);
    expect(down[0]!.labels.severity).toBe('critical');
    expect((await active('IngestNodeDown'))[0]!.labels.severity).toBe('critical');
  }, 60_000);
});
