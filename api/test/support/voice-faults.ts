import type { z } from 'zod';
import { voiceRequestSchemas, type ServerMessage } from '@hearth/protocol';
import { SeededRandom } from '../../../e2e/support/impairment/random';
import { TestSignalingClient, type TestApi } from './server';

// Fault scenarios of the voice path driven over real signaling WebSockets. The fault tests assert
// on what these return and `npm run bench:faults` reports it, so both measure the same thing.

/** Latency figures of one batch of requests, in milliseconds. */
export interface LatencySummary {
  /** Requests timed. */
  count: number;
  /** Median. */
  p50: number;
  /** 95th percentile. */
  p95: number;
  /** Slowest. */
  max: number;
}

/** What a flood of malformed signaling messages did, to the attacker and to everyone else. */
export interface SignalingFloodResult {
  /** Malformed frames the attacker managed to send before its socket closed, if it did. */
  sent: number;
  /** Error responses the attacker received. */
  refused: number;
  /** Of those, how many were `rate_limited`. */
  rateLimited: number;
  /** Close code the server gave the attacker; null when its connection stayed open. */
  attackerCloseCode: number | null;
  /** Wall time of the flood, from first frame to the last answer or the close. */
  floodMs: number;
  /** Bystanders' request latency before the flood. */
  before: LatencySummary;
  /** Bystanders' request latency during the flood. */
  during: LatencySummary;
  /** Bystander requests that failed or went unanswered during the flood. */
  bystanderFailures: number;
  /** Messages bystanders received during the flood other than answers to their own requests. */
  strayMessages: number;
  /** A client that joined the channel during the flood was admitted. */
  lateJoinOk: boolean;
}

/** A signaling client that has joined a channel, as the web client does before anything else. */
export async function joinOverSignaling(
  api: TestApi,
  name: string,
  channel: string,
): Promise<TestSignalingClient> {
  const client = await TestSignalingClient.connect(api.baseUrl, name, { channel });
  await joinOnSocket(client, channel);
  return client;
}

/**
 * Loads the router's capabilities and joins `channel` on an open signaling client; resolves with
 * the join response.
 */
export async function joinOnSocket(
  client: TestSignalingClient,
  channel: string,
): Promise<z.infer<typeof voiceRequestSchemas.join.response>> {
  const caps = (await client.request('getRouterRtpCapabilities')) as {
    data: { rtpCapabilities: unknown };
  };
  const joined = await client.request('join', {
    channel,
    rtpCapabilities: caps.data.rtpCapabilities,
  });
  if (joined.kind !== 'response' || !joined.ok) {
    client.close();
    throw new Error(`join refused: ${JSON.stringify(joined)}`);
  }
  return voiceRequestSchemas.join.response.parse(joined.data);
}

/** Summarizes latencies by nearest rank. */
export function summarizeLatency(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted.length === 0 ? Number.NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
  const round = (value: number) => Math.round(value * 10) / 10;
  return {
    count: sorted.length,
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

/**
 * The `index`-th malformed frame of a seeded flood: text that is not JSON, JSON of the wrong
 * shape, unknown methods, invalid data for real methods, requests on objects that do not exist,
 * and binary frames.
 */
export function malformedFrame(random: SeededRandom, index: number): string | Buffer {
  const id = 1_000_000 + index;
  switch (random.int(8)) {
    case 0:
      return `{"kind":"request","id":${id},${random.bytes(8).toString('hex')}`;
    case 1:
      return random.pick(['[]', '42', 'null', '"request"', '{}', 'true']);
    case 2:
      return JSON.stringify({ kind: 'request', id: `x${id}`, method: random.int(1000) });
    case 3:
      return JSON.stringify({ kind: 'request', id, method: `fly${random.int(1000)}`, data: {} });
    case 4:
      return JSON.stringify({
        kind: 'request',
        id,
        method: 'join',
        data: { channel: '../'.repeat(1 + random.int(20)), rtpCapabilities: random.int(9) },
      });
    case 5:
      return JSON.stringify({
        kind: 'request',
        id,
        method: 'produce',
        data: { transportId: random.bytes(4).toString('hex'), kind: 'video', rtpParameters: [] },
      });
    case 6:
      return JSON.stringify({
        kind: 'request',
        id,
        method: 'resumeConsumer',
        data: { consumerId: crypto.randomUUID() },
      });
    default:
      return random.bytes(1 + random.int(512));
  }
}

// Times one request; a failure or a missing answer counts as a failure, not as a latency.
async function timedRequest(client: TestSignalingClient): Promise<number | undefined> {
  const started = performance.now();
  const reply = await client.request('getRouterRtpCapabilities').catch(() => undefined);
  if (reply?.kind !== 'response' || !reply.ok) return undefined;
  return performance.now() - started;
}

/**
 * One joined client sends `messages` malformed frames, in batches that leave the event loop free
 * between them, while `bystanders` other joined clients of the same channel keep making requests
 * and one more client joins. The api's voice node rate limits decide whether the attacker is
 * answered throughout or cut off.
 */
export async function floodSignaling(
  api: TestApi,
  options: { messages: number; bystanders: number; seed: number; channel: string },
): Promise<SignalingFloodResult> {
  const bystanders: TestSignalingClient[] = [];
  const clients: TestSignalingClient[] = [];
  try {
    for (let index = 0; index < options.bystanders; index++) {
      bystanders.push(await joinOverSignaling(api, `bystander-${index}`, options.channel));
    }
    clients.push(...bystanders);
    const attacker = await joinOverSignaling(api, 'attacker', options.channel);
    clients.push(attacker);
    let attackerCloseCode: number | null = null;
    void attacker.closed().then((code) => (attackerCloseCode = code));

    const before: number[] = [];
    for (let round = 0; round < 20; round++) {
      for (const bystander of bystanders) {
        const ms = await timedRequest(bystander);
        if (ms !== undefined) before.push(ms);
      }
    }
    const seenBefore = bystanders.map((bystander) => bystander.messages.length);

    const during: number[] = [];
    let bystanderFailures = 0;
    let flooding = true;
    const bystanderLoops = bystanders.map(async (bystander) => {
      while (flooding) {
        const ms = await timedRequest(bystander);
        if (ms === undefined) bystanderFailures++;
        else during.push(ms);
      }
    });

    const random = new SeededRandom(options.seed);
    const started = performance.now();
    let sent = 0;
    const attackerOpen = () => attacker.socket.readyState === attacker.socket.OPEN;
    let lateJoin: Promise<boolean> | undefined;
    while (sent < options.messages && attackerOpen()) {
      const batchEnd = Math.min(options.messages, sent + 100);
      for (; sent < batchEnd; sent++) attacker.socket.send(malformedFrame(random, sent));
      // Once the flood is under way, someone joins the channel; early, so that it also happens
      // when the rate limit cuts the attacker off after a few hundred frames.
      if (!lateJoin) {
        lateJoin = joinOverSignaling(api, 'late', options.channel).then(
          (client) => (clients.push(client), true),
          () => false,
        );
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const refusals = () =>
      attacker.messages.filter((message) => message.kind === 'response' && !message.ok);
    // Every frame sent is answered, unless the server cut the attacker off.
    const deadline = Date.now() + 30_000;
    while (refusals().length < sent && attackerOpen() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const floodMs = performance.now() - started;
    const lateJoinOk = await (lateJoin ?? Promise.resolve(false));
    flooding = false;
    await Promise.all(bystanderLoops);

    const stray = bystanders.flatMap((bystander, index) =>
      bystander.messages
        .slice(seenBefore[index])
        .filter((message: ServerMessage) => !isOwnAnswer(message) && !isRosterChange(message)),
    );
    const refused = refusals();
    return {
      sent,
      refused: refused.length,
      rateLimited: refused.filter(
        (message) =>
          message.kind === 'response' && !message.ok && message.error.code === 'rate_limited',
      ).length,
      attackerCloseCode,
      floodMs: Math.round(floodMs),
      before: summarizeLatency(before),
      during: summarizeLatency(during),
      bystanderFailures,
      strayMessages: stray.length,
      lateJoinOk,
    };
  } finally {
    for (const client of clients) client.close();
  }
}

// A bystander's own requests are answered successfully; an error response would be stray.
function isOwnAnswer(message: ServerMessage): boolean {
  return message.kind === 'response' && message.ok;
}

// The late joiner's arrival, and the attacker's departure when it is cut off, are news every
// participant is meant to get.
function isRosterChange(message: ServerMessage): boolean {
  return (
    message.kind === 'notification' &&
    (message.method === 'participantJoined' || message.method === 'participantLeft')
  );
}

/** What killing the worker holding a channel's core did to that channel's clients. */
export interface WorkerDeathResult {
  /** Clients in the channel when the worker died. */
  clients: number;
  /** Clients told to reconnect (or whose socket closed). */
  told: number;
  /** From the kill until the pool had a new worker at the same index. */
  replacedMs: number;
  /** From the kill until each client had joined again over a fresh placement. */
  rejoinMs: LatencySummary;
  /** Clients that joined again. */
  rejoined: number;
  /** Live workers afterwards. */
  workers: number;
}

/**
 * Joins `clients` signaling clients to `channel`, SIGKILLs the mediasoup worker holding its core,
 * and lets each client do what the web client does on a `reconnect` notification: ask the api for
 * a place again and join. Needs an api whose voice node has at least two workers.
 */
export async function killCoreWorker(
  api: TestApi,
  options: { clients: number; channel: string },
): Promise<WorkerDeathResult> {
  const voice = api.voice;
  if (!voice) throw new Error('the api runs no voice node');
  const clients: TestSignalingClient[] = [];
  try {
    for (let index = 0; index < options.clients; index++) {
      clients.push(await joinOverSignaling(api, `member-${index}`, options.channel));
    }
    const channel = voice.channels.get(options.channel);
    if (!channel) throw new Error(`channel ${options.channel} is not open`);
    const coreWorker = channel.layout().core.workerIndex;
    const replaced = new Promise<number>((resolve) =>
      voice.pool.events.on('workerReplaced', (index) => {
        if (index === coreWorker) resolve(performance.now());
      }),
    );
    const killedAt = performance.now();
    process.kill(voice.pool.slot(coreWorker).worker.pid, 'SIGKILL');

    const rejoinTimes: number[] = [];
    let told = 0;
    await Promise.all(
      clients.map(async (client, index) => {
        const notice = client
          .waitFor((m) => m.kind === 'notification' && m.method === 'reconnect', 10_000)
          .then(() => true);
        const closed = client.closed().then(() => true);
        if (!(await Promise.race([notice, closed]).catch(() => false))) return;
        told++;
        client.close();
        // As the web client does: retry with a delay doubling from 250 ms, since clients that
        // share one address also share the api's join rate limit.
        let again: TestSignalingClient | undefined;
        for (let attempt = 0; !again && attempt < 6; attempt++) {
          if (attempt > 0)
            await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** (attempt - 1)));
          again = await joinOverSignaling(api, `member-${index}`, options.channel).catch(
            () => undefined,
          );
        }
        if (!again) return;
        clients.push(again);
        rejoinTimes.push(performance.now() - killedAt);
      }),
    );
    const replacedAt = await Promise.race([
      replaced,
      new Promise<number>((resolve) => setTimeout(() => resolve(Number.NaN), 10_000).unref()),
    ]);
    return {
      clients: options.clients,
      told,
      replacedMs: Math.round(replacedAt - killedAt),
      rejoinMs: summarizeLatency(rejoinTimes),
      rejoined: rejoinTimes.length,
      workers: voice.pool.slots.length,
    };
  } finally {
    for (const client of clients) client.close();
  }
}
