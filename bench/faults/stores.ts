// Fault scenarios of the control plane's stores and process: Redis down, PostgreSQL stopped and
// hung, and the api killed with SIGKILL and started again.
import os from 'node:os';
import { channelSchema, nodeListSchema } from '@hearth/protocol';
import { PostgresClient } from '../../api/src/db/postgres-client';
import {
  connectDoomedNode,
  killProcess,
  startApiProcess,
  stopProcess,
} from '../../api/test/support/api-processes';
import { TEST_ADMIN_TOKEN, guestSession, operator } from '../../api/test/support/sessions';
import { TestPostgres } from '../../api/test/support/postgres';
import { startRedis } from '../../api/test/support/redis';
import {
  startTestApi,
  type TestApi,
  type TestSignalingClient,
} from '../../api/test/support/server';
import { joinOverSignaling } from '../../api/test/support/voice-faults';
import { freePort, startVoiceNodeProcess } from '../../e2e/support/voice-nodes';
import { seconds, sleep, timeUntil, type FaultScenario } from './row';
import { joinAvoiding } from './voice';

const CLUSTER_SECRET = 'faults-stores-secret-0123456789abcdef0123456789';
// The operator token every test api has (api-process.ts is told it too).
const ADMIN_TOKEN = TEST_ADMIN_TOKEN;
const OUTAGE_MS = 5000;

/**
 * `POST /api/voice/join` as a new guest session (started first, untimed: it needs no store), timed;
 * status 0 when the request itself failed.
 */
async function timedJoin(baseUrl: string, name: string): Promise<{ status: number; ms: number }> {
  const guest = await guestSession(baseUrl, name);
  const started = performance.now();
  const response = await fetch(`${baseUrl}/api/voice/join`, {
    method: 'POST',
    headers: { ...guest, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'lobby' }),
  }).catch(() => undefined);
  await response?.arrayBuffer();
  return { status: response?.status ?? 0, ms: performance.now() - started };
}

const redisDown: FaultScenario = {
  id: 'redis',
  async run() {
    const redis = await startRedis();
    // Production failure-detector settings: 3 s node timeout, 1 s sweeps.
    const api = await startTestApi({
      api: {
        redisUrl: redis.url,
        clusterSecret: CLUSTER_SECRET,
        nodeTimeoutMs: '3000',
        sweepIntervalMs: '1000',
      },
    });
    const node = await startVoiceNodeProcess({
      id: 'voice-x',
      apiUrl: api.baseUrl,
      clusterSecret: CLUSTER_SECRET,
    });
    const clients: TestSignalingClient[] = [];
    let watching = true;
    const downSeen = new Set<string>();
    const nodeIds = new Set<string>();
    const watcher = (async () => {
      while (watching) {
        const response = await fetch(`${api.baseUrl}/api/nodes`, {
          headers: operator(),
        }).catch(() => undefined);
        if (response?.status === 200) {
          for (const each of nodeListSchema.parse(await response.json()).nodes) {
            nodeIds.add(each.id);
            if (each.status !== 'up') downSeen.add(each.id);
          }
        } else await response?.arrayBuffer();
        await sleep(100);
      }
    })();
    try {
      await timeUntil(async () => nodeIds.size === 2, 20_000, 'both voice nodes listed');
      clients.push(await joinOverSignaling(api, 'Ada', 'lobby'));
      await redis.kill();
      const killedAt = performance.now();
      const during: { status: number; ms: number }[] = [];
      while (performance.now() - killedAt < OUTAGE_MS) {
        during.push(await timedJoin(api.baseUrl, `during-${during.length}`));
        await sleep(250);
      }
      const callAlive = (await clients[0]!.request('getRouterRtpCapabilities')).kind === 'response';
      await redis.restart();
      const backAt = performance.now();
      const recoveryMs = await timeUntil(
        async () => (await timedJoin(api.baseUrl, 'after')).status === 200,
        20_000,
        'a join after the outage',
      );
      clients.push(await joinOverSignaling(api, 'Bo', 'lobby'));
      // Watch for two node timeouts more: a wrongly marked node would show up by then.
      await sleep(2 * 3000 + 1000);
      const refused = during.filter((answer) => answer.status === 503);
      const slowest = Math.max(...during.map((answer) => answer.ms));
      const figures = {
        nodes: [...nodeIds],
        markedDown: [...downSeen],
        joinsDuring: during.length,
        refused503: refused.length,
        slowestAnswerDuringMs: Math.round(slowest),
        recoveryMs: Math.round(recoveryMs),
        callAlive,
        sinceBackMs: Math.round(performance.now() - backAt),
      };
      return [
        {
          scenario: 'Redis down for 5 s',
          done: 'redis-server SIGKILLed for 5 s and restarted empty, under an api with its embedded voice node and a voice-sfu process (node timeout 3 s)',
          held: `nodes marked down: ${downSeen.size} of ${nodeIds.size}; joins during: ${refused.length}/${during.length} answered 503, slowest in ${Math.round(slowest)} ms; the ongoing call answered throughout: ${callAlive ? 'yes' : 'NO'}; joins after: admitted`,
          recovery: `first join admitted ${seconds(recoveryMs)} after Redis was back`,
          dataLost: "none (the registry is rebuilt from the nodes' registrations and replays)",
          passed:
            downSeen.size === 0 &&
            nodeIds.size === 2 &&
            refused.length === during.length &&
            callAlive,
          figures,
        },
      ];
    } finally {
      watching = false;
      await watcher;
      for (const client of clients) client.close();
      await node.stop();
      await api.close();
      await redis.stop();
    }
  },
};

const postgresDown: FaultScenario = {
  id: 'postgres',
  async run() {
    const postgres = await TestPostgres.start({ crashSafe: true });
    const connectTimeoutMs = 1000;
    const statementTimeoutMs = 2000;
    let api: TestApi | undefined;
    // A guest session: a signed token, so presenting it reads no table.
    let guest: Record<string, string> = {};
    const list = async () => {
      const started = performance.now();
      const response = await fetch(`${api!.baseUrl}/api/channels`, { headers: guest });
      await response.arrayBuffer();
      return { status: response.status, ms: performance.now() - started };
    };
    const create = async (name: string) => {
      const response = await fetch(`${api!.baseUrl}/api/channels`, {
        method: 'POST',
        headers: { ...operator(), 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      await response.arrayBuffer();
      return response.status;
    };
    const duringOutage = async () => {
      const answers: { status: number; ms: number }[] = [];
      const started = performance.now();
      while (performance.now() - started < OUTAGE_MS) {
        answers.push(await list());
        await sleep(250);
      }
      return answers;
    };
    try {
      api = await startTestApi({
        api: { embeddedVoice: 'false', clusterSecret: CLUSTER_SECRET },
        database: new PostgresClient(await postgres.createDatabase(), () => undefined, {
          connectTimeoutMs,
          statementTimeoutMs,
        }),
      });
      guest = await guestSession(api.baseUrl, 'Ada');
      if ((await create('before')) !== 201) throw new Error('could not create a channel');
      const rows = [];
      for (const mode of ['stopped', 'hung'] as const) {
        if (mode === 'stopped') await postgres.kill();
        else postgres.pause();
        const answers = await duringOutage();
        const writeDuring = await create(`during-${mode}`);
        if (mode === 'stopped') await postgres.restart();
        else postgres.resume();
        const recoveryMs = await timeUntil(
          async () => (await list()).status === 200,
          20_000,
          'the api answering again',
          50,
        );
        const after = await create(`after-${mode}`);
        const listed = await fetch(`${api.baseUrl}/api/channels`, { headers: guest });
        const names = ((await listed.json()) as { channels: { name: string }[] }).channels.map(
          (channel) => channel.name,
        );
        const refused = answers.filter((answer) => answer.status === 503);
        const slowest = Math.max(...answers.map((answer) => answer.ms));
        rows.push({
          scenario: `PostgreSQL ${mode === 'stopped' ? 'stopped (SIGKILL)' : 'hung (SIGSTOP)'} for 5 s`,
          done: `${mode === 'stopped' ? 'postgres SIGKILLed, restarted after 5 s' : 'postgres and its backends frozen with SIGSTOP, SIGCONT after 5 s'}; GET /api/channels every 250 ms meanwhile (connect timeout ${connectTimeoutMs} ms, statement timeout ${statementTimeoutMs} ms)`,
          held: `${refused.length}/${answers.length} requests answered 503 "database unavailable", slowest in ${Math.round(slowest)} ms; a write during the outage answered ${writeDuring}; writes after succeed (${after}); every channel written before is listed`,
          recovery: `${seconds(recoveryMs)} from ${mode === 'stopped' ? 'restart' : 'SIGCONT'} to the first 200`,
          dataLost: 'none: writes during the outage were refused with 503, not lost silently',
          passed:
            refused.length === answers.length &&
            writeDuring === 503 &&
            after === 201 &&
            names.includes('before') &&
            names.includes(`after-${mode}`),
          figures: {
            answers: answers.map((answer) => ({
              status: answer.status,
              ms: Math.round(answer.ms),
            })),
            writeDuring,
            recoveryMs: Math.round(recoveryMs),
            channels: names,
          },
        });
      }
      return rows;
    } finally {
      postgres.resume();
      await api?.close();
      await postgres.stop();
    }
  },
};

const apiKilled: FaultScenario = {
  id: 'api-kill',
  async run() {
    const postgres = await TestPostgres.start({ crashSafe: true });
    const databaseUrl = await postgres.createDatabase();
    const db = new PostgresClient(databaseUrl, () => undefined);
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const embedded = `embedded-${os.hostname()}`;
    const nodeTimeoutMs = 3000;
    const apiOptions = {
      databaseUrl,
      port,
      clusterSecret: CLUSTER_SECRET,
      adminToken: ADMIN_TOKEN,
      nodeTimeoutMs,
    };
    let api = await startApiProcess(apiOptions);
    const clients: TestSignalingClient[] = [];
    const doomed = await connectDoomedNode(baseUrl, CLUSTER_SECRET);
    const node = await startVoiceNodeProcess({
      id: 'node-x',
      apiUrl: baseUrl,
      clusterSecret: CLUSTER_SECRET,
    });
    try {
      const openRows = async () =>
        (
          await db.query(
            `SELECT node_id, display_name FROM session_history WHERE left_at IS NULL ORDER BY node_id`,
          )
        ).map((row) => `${String(row.node_id)}/${String(row.display_name)}`);
      const upNodes = async () => {
        const response = await fetch(`${baseUrl}/api/nodes`, { headers: operator() });
        return nodeListSchema
          .parse(await response.json())
          .nodes.filter((each) => each.status === 'up')
          .map((each) => each.id);
      };
      await timeUntil(async () => (await upNodes()).includes('node-x'), 20_000, 'node-x up');
      const ada = await joinAvoiding(baseUrl, 'Ada', 'lobby', [embedded, 'node-doomed']);
      const cy = await joinAvoiding(baseUrl, 'Cy', 'games', ['node-x', 'node-doomed']);
      clients.push(ada.client, cy.client);
      await timeUntil(async () => (await openRows()).length === 3, 10_000, 'three open rows');
      const before = await openRows();

      await killProcess(api);
      doomed.terminate();
      const restartedAt = performance.now();
      api = await startApiProcess(apiOptions);
      const listening = performance.now() - restartedAt;
      const lobby = async () => {
        const response = await fetch(`${baseUrl}/api/channels/lobby`, { headers: operator() });
        return response.status === 200
          ? channelSchema.parse(await response.json()).participants.map((p) => p.displayName)
          : [];
      };
      const replayedMs = await timeUntil(
        async () => (await lobby()).join() === 'Ada',
        20_000,
        'Ada replayed',
      ).then(() => performance.now() - restartedAt);
      const closedMs = await timeUntil(
        async () => (await openRows()).every((row) => row.startsWith('node-x/')),
        4 * nodeTimeoutMs + 10_000,
        'the dead nodes’ rows closed',
      ).then(() => performance.now() - restartedAt);
      const [{ open }] = (await db.query(
        `SELECT count(*)::int AS open FROM session_history WHERE left_at IS NULL AND node_id <> 'node-x'`,
      )) as [{ open: number }];
      const after = await openRows();
      const adaStillOpen =
        (await ada.client.request('getRouterRtpCapabilities')).kind === 'response';
      return [
        {
          scenario: 'api SIGKILL and restart',
          done: `api process (embedded voice node, PostgreSQL) SIGKILLed with Ada on a voice-sfu process, Cy on the embedded node and Dee on a node that never returns; started again on the same port (node timeout ${nodeTimeoutMs} ms)`,
          held: `open history rows of dead nodes afterwards: ${open} (before: ${before.join(', ')}; after: ${after.join(', ')}); Ada's call on node-x went on: ${adaStillOpen ? 'yes' : 'NO'}`,
          recovery: `listening again ${seconds(listening)} after the restart; node-x replayed Ada after ${seconds(replayedMs)}; dead nodes' rows closed after ${seconds(closedMs)}`,
          dataLost:
            "Cy's session on the embedded node (it died with the api; its row is closed); nothing else",
          passed: open === 0 && after.join() === 'node-x/Ada' && adaStillOpen,
          figures: {
            before,
            after,
            deadNodesOpen: open,
            listeningMs: Math.round(listening),
            replayedMs: Math.round(replayedMs),
            closedMs: Math.round(closedMs),
          },
        },
      ];
    } finally {
      for (const client of clients) client.close();
      doomed.terminate();
      await node.stop();
      await stopProcess(api);
      await db.close();
      await postgres.stop();
    }
  },
};

/** Store and api-process scenarios in table order. */
export const storeScenarios = { redisDown, postgresDown, apiKilled };
