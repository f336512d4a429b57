import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { z } from 'zod';
import { errorBodySchema, type nodeToApiMessageSchema } from '@hearth/protocol';
import { AppError, ServiceUnavailableError } from '@hearth/server-common';
import { PostgresClient } from '../../src/db/postgres-client';
import { isUniqueViolation } from '../../src/db/sql-client';
import { TestPostgres } from '../support/postgres';
import { guestSession, operator } from '../support/accounts';
import { startTestApi, type TestApi } from '../support/server';

// Short timeouts keep each outage test well under a minute; the defaults are 5 s and 10 s.
const CONNECT_TIMEOUT_MS = 1000;
const STATEMENT_TIMEOUT_MS = 2000;
// A server that does not answer at all is given up one second after the statement timeout.
const HUNG_QUERY_TIMEOUT_MS = STATEMENT_TIMEOUT_MS + 1000;
// Room for a loaded two-core machine between a timeout firing and the answer arriving.
const SLACK_MS = 1500;
const UNAVAILABLE = { error: { code: 'unavailable', message: 'database unavailable' } };

let postgres: TestPostgres;
let api: TestApi | undefined;
// A guest session of the running api: a signed token, so using it reads no table.
let guest: Record<string, string> = {};

beforeAll(async () => {
  postgres = await TestPostgres.start({ crashSafe: true });
});

afterEach(async () => {
  // A failed test may leave the server frozen; the api's pool could not close against it.
  postgres.resume();
  await api?.close();
  api = undefined;
});

afterAll(async () => {
  await postgres?.stop();
});

const CLUSTER_SECRET = 'database-outage-cluster-secret-0123456789abcdef';

async function startApi(): Promise<TestApi> {
  const database = new PostgresClient(await postgres.createDatabase(), () => undefined, {
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    statementTimeoutMs: STATEMENT_TIMEOUT_MS,
  });
  api = await startTestApi({
    api: { embeddedVoice: 'false', clusterSecret: CLUSTER_SECRET },
    database,
  });
  guest = await guestSession(api.baseUrl, 'Ada');
  return api;
}

/** GET /api/channels as a guest (a read of the channels table), timed. */
async function listChannels(): Promise<{ status: number; body: unknown; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${api!.baseUrl}/api/channels`, { headers: guest });
  const body: unknown = await response.json();
  return { status: response.status, body, ms: performance.now() - started };
}

/** POST /api/channels with the operator token (a write; guests may not create channels), timed. */
async function createChannel(name: string): Promise<{ status: number; body: unknown; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${api!.baseUrl}/api/channels`, {
    method: 'POST',
    headers: { ...operator(), 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  const body: unknown = await response.json();
  return { status: response.status, body, ms: performance.now() - started };
}

/** Milliseconds until GET /api/channels answers 200 again; fails after `timeoutMs`. */
async function timeToRecover(timeoutMs = 15_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const { status } = await listChannels();
    if (status === 200) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`still ${status} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the api while PostgreSQL is out', () => {
  it('a killed server: requests answer 503 "database unavailable" at once, and succeed once it is back', async () => {
    await startApi();
    expect((await createChannel('before')).status).toBe(201);
    expect((await listChannels()).status).toBe(200);

    await postgres.kill();
    const answers = await Promise.all([
      listChannels(),
      listChannels(),
      createChannel('during'),
      listChannels(),
    ]);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(errorBodySchema.parse(answer.body)).toEqual(UNAVAILABLE);
      // A refused connection fails fast; the connect timeout is the bound in any case.
      expect(answer.ms).toBeLessThan(CONNECT_TIMEOUT_MS + SLACK_MS);
    }

    await postgres.restart();
    const recoveredMs = await timeToRecover();
    expect(recoveredMs).toBeLessThan(5000);
    expect((await createChannel('after')).status).toBe(201);
    const listed = await listChannels();
    expect(
      (listed.body as { channels: { name: string }[] }).channels.map((channel) => channel.name),
    ).toEqual(['before', 'after']);
  });

  it('a hung server (SIGSTOP): requests answer 503 within the timeouts, and succeed after SIGCONT', async () => {
    await startApi();
    // One pooled connection is open and idle when the server freezes.
    expect((await listChannels()).status).toBe(200);

    postgres.pause();
    // The first request gets the idle connection and waits for an answer that never comes; the
    // others open new connections, which hang in the start-up exchange.
    const answers = await Promise.all([listChannels(), listChannels(), createChannel('hung')]);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(errorBodySchema.parse(answer.body)).toEqual(UNAVAILABLE);
      expect(answer.ms).toBeLessThan(HUNG_QUERY_TIMEOUT_MS + SLACK_MS);
    }
    // While it stays frozen, each request waits only for the connect timeout.
    const later = await listChannels();
    expect(later.status).toBe(503);
    expect(later.ms).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
    expect(later.ms).toBeLessThan(CONNECT_TIMEOUT_MS + SLACK_MS);

    postgres.resume();
    const recoveredMs = await timeToRecover();
    expect(recoveredMs).toBeLessThan(5000);
    expect((await createChannel('after')).status).toBe(201);
  });
});

describe('voice session history across a database outage', () => {
  let socket: WebSocket | undefined;
  let beat: NodeJS.Timeout | undefined;

  afterEach(() => {
    clearInterval(beat);
    socket?.terminate();
  });

  it('sessions that opened and closed while the database was down are right in history once it is back', async () => {
    await startApi();
    socket = new WebSocket(`${api!.baseUrl.replace('http', 'ws')}/ws/nodes`, {
      headers: { authorization: `Cluster ${CLUSTER_SECRET}` },
    });
    await new Promise((resolve, reject) => {
      socket!.once('open', resolve);
      socket!.once('error', reject);
    });
    const send = (message: z.input<typeof nodeToApiMessageSchema>) =>
      socket!.send(JSON.stringify(message));
    send({
      type: 'register',
      registration: { id: 'node-a', kind: 'voice', limits: {} },
      rtpCapabilities: { codecs: [], headerExtensions: [] },
    });
    send({ type: 'replay', sessions: [], done: true });
    beat = setInterval(() => send({ type: 'heartbeat', load: {} }), 200);
    const opened = (name: string) => {
      const peerId = crypto.randomUUID();
      send({
        type: 'sessionOpened',
        peerId,
        channel: 'lobby',
        userId: `guest:${name}`,
        displayName: name,
      });
      return peerId;
    };
    const openRows = async () =>
      (
        await api!.database.query(
          'SELECT display_name FROM session_history WHERE left_at IS NULL ORDER BY display_name',
        )
      ).map((row) => String(row.display_name));
    const bo = opened('Bo');
    await expect.poll(openRows).toEqual(['Bo']);

    await postgres.kill();
    // Ada joins and Bo leaves while nothing can be written.
    opened('Ada');
    send({ type: 'sessionClosed', peerId: bo });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await postgres.restart();
    await expect.poll(openRows, { timeout: 10_000, interval: 100 }).toEqual(['Ada']);
    const [bosRow] = await api!.database.query(
      "SELECT left_at FROM session_history WHERE display_name = 'Bo'",
    );
    expect(bosRow!.left_at).toBeInstanceOf(Date);
  });
});

describe('PostgresClient timeouts and errors', () => {
  let client: PostgresClient | undefined;

  afterEach(async () => {
    await client?.close();
    client = undefined;
  });

  it('a statement past the statement timeout rejects with ServiceUnavailableError("database")', async () => {
    client = new PostgresClient(await postgres.createDatabase(), () => undefined, {
      statementTimeoutMs: 300,
    });
    const started = performance.now();
    const error: unknown = await client.query('SELECT pg_sleep(5)').catch((caught) => caught);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).service).toBe('database');
    expect(performance.now() - started).toBeLessThan(300 + SLACK_MS);
    // The connection is usable for the next statement.
    expect(await client.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it("a statement's own errors and errors thrown inside a transaction pass through unchanged", async () => {
    client = new PostgresClient(await postgres.createDatabase(), () => undefined);
    await client.exec('CREATE TABLE t (id int PRIMARY KEY)');
    await client.query('INSERT INTO t VALUES (1)');
    const duplicate: unknown = await client
      .query('INSERT INTO t VALUES (1)')
      .catch((caught) => caught);
    expect(isUniqueViolation(duplicate)).toBe(true);
    expect(duplicate).not.toBeInstanceOf(ServiceUnavailableError);
    const refused = new AppError('not_found', 'no such row');
    await expect(
      client.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (2)');
        throw refused;
      }),
    ).rejects.toBe(refused);
    expect(await client.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }]);
  });
});
