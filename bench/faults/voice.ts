// Fault scenarios of the voice path: malformed signaling, a mediasoup worker killed, a voice node
// process killed, and participant churn.
import { channelNodeSchema, nodeListSchema, voiceJoinSchema } from '@hearth/protocol';
import { VoiceNode, voiceConfig } from '@hearth/voice-sfu';
import { ensureChannel, guestSession, operator } from '../../api/test/support/sessions';
import { startTestApi, TestSignalingClient } from '../../api/test/support/server';
import { floodSignaling, joinOnSocket, killCoreWorker } from '../../api/test/support/voice-faults';
import { startVoiceNodeProcess } from '../../e2e/support/voice-nodes';
import { fuzzSeed } from '../../stream-ingest/test/support/rtmp-fuzz';
import { runParticipantChurn } from '../../voice-sfu/test/support/churn';
import { quietLogger } from '../../voice-sfu/test/support/plain-peers';
import { seconds, timeUntil, type FaultRow, type FaultScenario } from './row';

const CLUSTER_SECRET = 'faults-cluster-secret-0123456789abcdef0123456789';
// The operator token every test api has: it lists nodes and creates channels.
const admin = operator();

/**
 * Places a guest (a new guest session) in `channel`, created with the operator token if missing,
 * away from the nodes in `avoid`, as the web client asks after losing its node, and joins over
 * signaling with the single-use token; resolves with the node it landed on and its client.
 */
export async function joinAvoiding(
  baseUrl: string,
  name: string,
  channel: string,
  avoid: string[],
): Promise<{ nodeId: string; client: TestSignalingClient }> {
  await ensureChannel(baseUrl, channel);
  const response = await fetch(`${baseUrl}/api/voice/join`, {
    method: 'POST',
    headers: { ...(await guestSession(baseUrl, name)), 'content-type': 'application/json' },
    body: JSON.stringify({ channel, avoid }),
  });
  if (response.status !== 200) throw new Error(`join refused with ${response.status}`);
  const placement = voiceJoinSchema.parse(await response.json());
  const url = new URL(placement.url, baseUrl.replace('http', 'ws'));
  url.searchParams.set('token', placement.token);
  const client = await TestSignalingClient.open(url.href);
  await joinOnSocket(client, channel);
  return { nodeId: placement.nodeId, client };
}

const signalingFlood: FaultScenario = {
  id: 'signaling',
  async run() {
    const rows: FaultRow[] = [];
    for (const limited of [false, true]) {
      const api = await startTestApi(
        limited ? {} : { voice: { signalingRatePerSecond: 10_000, signalingBurst: 10_000 } },
      );
      try {
        const seed = fuzzSeed();
        const r = await floodSignaling(api, {
          messages: 10_000,
          bystanders: 3,
          seed,
          channel: 'flooded',
        });
        const bystanders = `other clients: ${r.during.count} requests during the flood, ${r.bystanderFailures} failed, p50/p95/max ${r.during.p50}/${r.during.p95}/${r.during.max} ms (before: ${r.before.p50}/${r.before.p95}/${r.before.max} ms), ${r.strayMessages} stray messages; a join during the flood ${r.lateJoinOk ? 'admitted' : 'REFUSED'}`;
        const common = r.bystanderFailures === 0 && r.strayMessages === 0 && r.lateJoinOk;
        rows.push(
          limited
            ? {
                scenario: '10,000 malformed signaling messages, default rate limit',
                done: `one joined client sends 10,000 malformed frames (8 kinds, seed ${seed}) as fast as it can; 3 others keep requesting`,
                held: `attacker cut off with close code ${r.attackerCloseCode} after ${r.sent} frames (${r.refused} refused, ${r.rateLimited} of them rate_limited); ${bystanders}`,
                recovery: 'none needed',
                dataLost: 'none',
                passed: common && r.attackerCloseCode === 1008,
                figures: { seed, ...r },
              }
            : {
                scenario: '10,000 malformed signaling messages, rate limit lifted',
                done: `one joined client sends 10,000 malformed frames (8 kinds, seed ${seed}) in ${r.floodMs} ms; 3 others keep requesting`,
                held: `every frame parsed and refused (${r.refused}/${r.sent}), attacker still connected (${r.attackerCloseCode === null ? 'open' : `closed ${r.attackerCloseCode}`}); ${bystanders}`,
                recovery: 'none needed',
                dataLost: 'none',
                passed: common && r.refused === 10_000 && r.attackerCloseCode === null,
                figures: { seed, ...r },
              },
        );
      } finally {
        await api.close();
      }
    }
    return rows;
  },
};

const workerKilled: FaultScenario = {
  id: 'worker',
  async run() {
    const api = await startTestApi({ voice: { numWorkers: 2 } });
    try {
      const r = await killCoreWorker(api, { clients: 10, channel: 'doomed' });
      return [
        {
          scenario: 'mediasoup worker killed',
          done: `SIGKILL of the worker holding the core of a channel with ${r.clients} signaling clients (2 workers); clients retry as the web client does (250 ms doubling), and all share one address, so the api's join rate limit (5/s per address) spaces their rejoins`,
          held: `${r.told}/${r.clients} clients told to reconnect; ${r.rejoined}/${r.clients} joined again over a fresh placement; ${r.workers} workers afterwards`,
          recovery: `clients rejoined after p50 ${r.rejoinMs.p50} ms, max ${r.rejoinMs.max} ms; worker replaced on its port after ${r.replacedMs} ms`,
          dataLost: `the channel's media objects on that worker (clients rebuild them on rejoin); audio gap ≈ ${r.rejoinMs.max} ms plus ICE/DTLS in a browser`,
          passed: r.told === r.clients && r.rejoined === r.clients && r.workers === 2,
          figures: r,
        },
      ];
    } finally {
      await api.close();
    }
  },
};

const voiceNodeKilled: FaultScenario = {
  id: 'voice-node',
  async run() {
    // Production failure-detector settings: 3 s node timeout, 1 s sweeps, 1 s heartbeats.
    const api = await startTestApi({
      api: {
        embeddedVoice: 'false',
        clusterSecret: CLUSTER_SECRET,
        nodeTimeoutMs: '3000',
        sweepIntervalMs: '1000',
      },
    });
    const nodes = [];
    const clients: TestSignalingClient[] = [];
    try {
      const upNodes = async () => {
        const response = await fetch(`${api.baseUrl}/api/nodes`, { headers: admin });
        return nodeListSchema
          .parse(await response.json())
          .nodes.filter((node) => node.status === 'up')
          .map((node) => node.id);
      };
      const a = await startVoiceNodeProcess({
        id: 'voice-a',
        apiUrl: api.baseUrl,
        clusterSecret: CLUSTER_SECRET,
      });
      nodes.push(a);
      await timeUntil(async () => (await upNodes()).includes('voice-a'), 20_000, 'voice-a up');
      const ada = await joinAvoiding(api.baseUrl, 'Ada', 'hall', []);
      clients.push(ada.client);
      const b = await startVoiceNodeProcess({
        id: 'voice-b',
        apiUrl: api.baseUrl,
        clusterSecret: CLUSTER_SECRET,
      });
      nodes.push(b);
      await timeUntil(async () => (await upNodes()).includes('voice-b'), 20_000, 'voice-b up');
      const coreNode = async () => {
        const response = await fetch(`${api.baseUrl}/api/channels/hall/node`, { headers: admin });
        return response.ok ? channelNodeSchema.parse(await response.json()).nodeId : undefined;
      };
      const before = await coreNode();

      const killedAt = performance.now();
      await a.kill();
      // Ada's client sees its socket drop and asks again away from the dead node.
      await ada.client.closed();
      let rejoinedOn = '';
      await timeUntil(
        async () => {
          const again = await joinAvoiding(api.baseUrl, 'Ada', 'hall', ['voice-a']);
          clients.push(again.client);
          rejoinedOn = again.nodeId;
          return true;
        },
        15_000,
        'Ada rejoined',
        200,
      );
      const rejoinedAfter = performance.now() - killedAt;
      await timeUntil(async () => !(await upNodes()).includes('voice-a'), 15_000, 'voice-a down');
      const downAfter = performance.now() - killedAt;
      await timeUntil(async () => (await coreNode()) === 'voice-b', 15_000, 'hall on voice-b');
      const replacedAfter = performance.now() - killedAt;
      const figures = {
        coreBefore: before,
        rejoinedOn,
        rejoinedAfterMs: Math.round(rejoinedAfter),
        markedDownAfterMs: Math.round(downAfter),
        channelReplacedAfterMs: Math.round(replacedAfter),
      };
      return [
        {
          scenario: 'voice node process killed',
          done: "SIGKILL of the voice-sfu process holding a channel's core (api with two voice-sfu processes; node timeout 3 s, sweep 1 s, heartbeat 300 ms)",
          held: `the client, asking again away from the dead node, joined on ${rejoinedOn}; the node was marked down and the channel re-placed on voice-b`,
          recovery: `client rejoined after ${seconds(rejoinedAfter)}; node marked down after ${seconds(downAfter)}; channel re-placed after ${seconds(replacedAfter)}`,
          dataLost: 'the sessions on the dead node (clients rejoin); no other channel touched',
          passed: before === 'voice-a' && rejoinedOn === 'voice-b',
          figures,
        },
      ];
    } finally {
      for (const client of clients) client.close();
      for (const node of nodes) await node.stop();
      await api.close();
    }
  },
};

const churn: FaultScenario = {
  id: 'churn',
  async run({ short }) {
    const node = await VoiceNode.start(
      voiceConfig({ numWorkers: 2, rtcBasePort: 0, workerLogLevel: 'none' }),
      quietLogger,
    );
    try {
      const durationMs = short ? 30_000 : 10 * 60_000;
      const r = await runParticipantChurn(node, {
        participants: 100,
        speakers: 5,
        channels: 4,
        durationMs,
        cyclesPerSecond: 10,
      });
      const zero = Object.values(r.after).every((count) => count === 0);
      return [
        {
          scenario: `100 participants joining and leaving for ${short ? '30 s (short form)' : '10 min'}`,
          done: `100 RTP participants (5 speakers) in 4 channels on one node with 2 workers; 10 leave-and-rejoin cycles per second (${r.joins} joins, ${r.leaves} leaves in all), then everyone leaves`,
          held: `objects at peak ${JSON.stringify(r.peak)}, afterwards ${JSON.stringify(r.after)}; routers in the workers' own dumps ${r.workerRouters}; open channels ${r.openChannels}; ${r.failures} failed joins or leaves; ${r.packetsDelivered} RTP packets delivered; RSS of the node process ${r.memoryBefore.processMiB} → ${r.memoryAfter.processMiB} MiB, of its workers ${r.memoryBefore.workersMiB} → ${r.memoryAfter.workersMiB} MiB`,
          recovery: 'none needed',
          dataLost: 'none',
          passed: zero && r.workerRouters === 0 && r.openChannels === 0 && r.failures === 0,
          figures: r,
        },
      ];
    } finally {
      node.close();
    }
  },
};

/** Voice scenarios in table order. */
export const voiceScenarios = { signalingFlood, workerKilled, voiceNodeKilled, churn };
