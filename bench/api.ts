// `npm run bench:api`: wrk against the join/placement endpoint (`POST /api/voice/join`) in two
// configurations, PGlite with in-process placement and PostgreSQL with Redis, then placement under
// node churn in both registries. Prints the figures and writes bench/results/api.{json,md}.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createLogger } from '@hearth/server-common';
import { voiceConfig } from '@hearth/voice-sfu';
import { tokenResponseSchema, voiceJoinSchema } from '@hearth/protocol';
import { apiConfig } from '../api/src/config';
import { startPlatform } from '../api/src/platform';
import { TestPostgres } from '../api/test/support/postgres';
import { startRedis } from '../api/test/support/redis';
import { measurePlacementChurn, type PlacementChurnResult } from './placement-churn';
import { round } from './stats';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const DURATION_SECONDS = quick ? 5 : 15;
// The targets (2000 req/s, p99 20 ms) are checked at the first level; the second shows how latency
// grows when four times as many clients wait at once. wrk gets one thread: the machine has two
// cores, and the api, PostgreSQL and Redis need the other.
const CONNECTION_LEVELS = [16, 64];
const CHANNELS = 100;
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef0123456789abcdef';

interface WrkResult {
  configuration: string;
  connections: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  requests: number;
  non2xx: number;
  socketErrors: number;
}

async function main(): Promise<void> {
  await run('wrk', ['--version']).catch((error: { stdout?: string; code?: string }) => {
    // wrk prints its version and exits 1; only a missing binary is a problem.
    if (error.code === 'ENOENT')
      throw new Error('wrk is not installed: run `npm run setup -- --test`');
  });
  const results: WrkResult[] = [];
  results.push(...(await benchConfiguration('PGlite, in-process placement', {})));
  const postgres = await TestPostgres.start();
  const redis = await startRedis();
  try {
    results.push(
      ...(await benchConfiguration('PostgreSQL + Redis', {
        databaseUrl: postgres.url,
        redisUrl: redis.url,
      })),
    );
  } finally {
    await redis.stop();
    await postgres.stop();
  }
  const churn: PlacementChurnResult[] = [
    await measurePlacementChurn({ registry: 'memory', nodes: 10, channels: 1000 }),
    await measurePlacementChurn({ registry: 'redis', nodes: 10, channels: 1000 }),
  ];
  report(results, churn);
}

async function benchConfiguration(
  configuration: string,
  backends: { databaseUrl?: string; redisUrl?: string },
): Promise<WrkResult[]> {
  console.log(`\n== ${configuration} ==`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-api-'));
  const logger = createLogger('bench-api', { level: 'error' });
  const platform = await startPlatform({
    config: apiConfig({
      dataDir,
      logLevel: 'silent',
      adminToken: ADMIN_TOKEN,
      jwtSecret: 'bench-jwt-secret-0123456789abcdef0123456789',
      clusterSecret: 'bench-cluster-secret-0123456789abcdef01234567',
      restRatePerSecond: '1000000',
      joinRatePerSecond: '1000000',
      authRatePerSecond: '1000',
      ...backends,
    }),
    voiceConfig: voiceConfig({ numWorkers: 1, rtcBasePort: 0, workerLogLevel: 'none' }),
    logger,
    registry: new Registry(),
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1:1935/live', playbackBaseUrl: 'http://127.0.0.1:8081' },
  });
  const server = platform.app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const accessToken = await prepare(baseUrl);
    // One warm-up pass places every channel, so the measured run is the steady state: joins to
    // channels that already have a core, as in a live community.
    await wrk(baseUrl, accessToken, 3, CONNECTION_LEVELS[0]!);
    const results: WrkResult[] = [];
    for (const connections of CONNECTION_LEVELS) {
      const output = await wrk(baseUrl, accessToken, DURATION_SECONDS, connections);
      const result = parseWrk(configuration, connections, output);
      console.log(
        `${connections} connections: ${result.requestsPerSecond} req/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, non-2xx ${result.non2xx}`,
      );
      results.push(result);
    }
    return results;
  } finally {
    // Requests wrk left in flight finish before the database closes under them.
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    await platform.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// An account, and the channels it joins; one join checks that the endpoint answers what the run
// will hammer. It is the first account registered, so the owner: the per-identity caps on joins
// waiting to connect do not apply to it, which the run needs, as none of its tokens is ever used.
async function prepare(baseUrl: string): Promise<string> {
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
  for (let index = 0; index < CHANNELS; index++) {
    const response = await fetch(`${baseUrl}/api/channels`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: `bench-${index}` }),
    });
    if (response.status !== 201) throw new Error(`creating a channel: ${response.status}`);
  }
  const registered = await fetch(`${baseUrl}/api/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bencher', password: 'correct horse battery' }),
  });
  const { accessToken } = tokenResponseSchema.parse(await registered.json());
  const join = await fetch(`${baseUrl}/api/voice/join`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'bench-0' }),
  });
  voiceJoinSchema.parse(await join.json());
  return accessToken;
}

async function wrk(
  baseUrl: string,
  accessToken: string,
  seconds: number,
  connections: number,
): Promise<string> {
  const { stdout } = await run(
    'wrk',
    [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '--latency',
      '-s',
      path.join(here, 'api/join.lua'),
      baseUrl,
    ],
    {
      env: { ...process.env, HEARTH_TOKEN: accessToken, HEARTH_CHANNELS: String(CHANNELS) },
      maxBuffer: 1 << 20,
    },
  );
  return stdout;
}

function parseWrk(configuration: string, connections: number, output: string): WrkResult {
  const number = (pattern: RegExp) => {
    const match = output.match(pattern);
    return match ? Number(match[1]) : 0;
  };
  const latency = (label: string) => {
    const match = output.match(new RegExp(`^\\s+${label}\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm'));
    if (!match) throw new Error(`wrk printed no ${label} latency:\n${output}`);
    const value = Number(match[1]);
    return round(match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value, 2);
  };
  const maxMatch = output.match(/Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/);
  const max = maxMatch
    ? Number(maxMatch[1]) * (maxMatch[2] === 'us' ? 0.001 : maxMatch[2] === 's' ? 1000 : 1)
    : 0;
  const errors = output.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  return {
    configuration,
    connections,
    requestsPerSecond: round(number(/Requests\/sec:\s+([\d.]+)/), 0),
    latencyMs: {
      p50: latency('50%'),
      p90: latency('90%'),
      p99: latency('99%'),
      max: round(max, 2),
    },
    requests: number(/(\d+) requests in/),
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
    socketErrors: errors ? errors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0,
  };
}

function report(results: WrkResult[], churn: PlacementChurnResult[]): void {
  const machine = `${os.cpus().length} cores, ${round(os.totalmem() / 2 ** 30, 0)} GiB, ${os.cpus()[0]?.model ?? 'unknown CPU'}`;
  const lines = [
    `Machine: ${machine}. wrk: 1 thread, ${DURATION_SECONDS} s per run, \`POST /api/voice/join\` as one account with a JWT, spread over ${CHANNELS} channels.`,
    '',
    '| configuration | connections | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.configuration} | ${r.connections} | ${r.requestsPerSecond} | ${r.latencyMs.p50} | ${r.latencyMs.p90} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${r.non2xx + r.socketErrors} |`,
    ),
    '',
    "Placement under churn: nodes stop heartbeating one after another; time from a node's last heartbeat until every channel it held is on up nodes.",
    '',
    '| registry | nodes | channels | placements/s | detection p50 ms | repaired max ms | sweep+replace max ms |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...churn.map((c) => {
      const detected = c.kills.map((kill) => kill.detectedMs).sort((a, b) => a - b);
      return `| ${c.registry} | ${c.nodes} | ${c.channels} | ${round(c.placementsPerSecond, 0)} | ${detected[Math.floor(detected.length / 2)] ?? 0} | ${Math.max(...c.kills.map((k) => k.repairedMs))} | ${Math.max(...c.kills.map((k) => k.sweepReplaceMs))} |`;
    }),
  ];
  const markdown = lines.join('\n');
  console.log(`\n${markdown}`);
  const resultsDir = path.join(here, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(
    path.join(resultsDir, 'api.json'),
    `${JSON.stringify({ machine, results, churn }, null, 2)}\n`,
  );
  fs.writeFileSync(path.join(resultsDir, 'api.md'), `${markdown}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
