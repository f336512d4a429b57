import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  channelStreamSchema,
  errorBodySchema,
  eventNotificationSchemas,
  issuedStreamKeySchema,
  liveStreamListSchema,
  streamKeyDetailsSchema,
  streamKeyListSchema,
} from '@hearth/protocol';
import { generateStreamKey, parseStreamKey, secretMatches } from '../src/streams/stream-keys';
import { bearer, guestSession, loginAccount, operator, registerAccount } from './support/accounts';
import { startTestApi, type TestApi } from './support/server';

let api: TestApi | undefined;
// An account holding `stream` in every channel (guests never may), and a guest viewer.
let streamer: Record<string, string> = {};
let viewer: Record<string, string> = {};

afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function start(options: Parameters<typeof startTestApi>[0] = {}): Promise<TestApi> {
  api = await startTestApi(options);
  // The first account registered becomes the owner; the streamer is an ordinary member.
  await registerAccount(api.baseUrl, 'owner');
  const registered = await registerAccount(api.baseUrl, 'streamer');
  await api.stores.memberships.set(registered.user.id, '*', ['stream']);
  streamer = bearer((await loginAccount(api.baseUrl, 'streamer')).accessToken);
  // The production profile admits no guests.
  viewer = options.api?.profile === 'production' ? {} : await guestSession(api.baseUrl, 'Viewer');
  return api;
}

async function post(path: string, headers: Record<string, string> = streamer): Promise<Response> {
  return fetch(`${api!.baseUrl}${path}`, { method: 'POST', headers });
}

// The access token in bearer headers, for WebSockets that take it as `access_token`.
function tokenOf(headers: Record<string, string>): string {
  return headers.authorization!.replace(/^Bearer /, '');
}

async function errorCode(response: Response): Promise<string> {
  return errorBodySchema.parse(await response.json()).error.code;
}

describe('stream key format and hashing', () => {
  it('generateStreamKey() makes RTMP-safe keys whose secret only matches its own hash', () => {
    const first = generateStreamKey();
    const second = generateStreamKey();
    expect(first.text).toMatch(/^[a-zA-Z0-9_-]+$/);
    expect(first.text).not.toBe(second.text);
    const parsed = parseStreamKey(first.text)!;
    expect(parsed.id).toBe(first.id);
    expect(secretMatches(parsed.secret, first.secretHash)).toBe(true);
    expect(secretMatches(parsed.secret, second.secretHash)).toBe(false);
    expect(first.secretHash.toString('hex')).not.toContain(parsed.secret);
  });

  it.each(['', 'sk_', 'sk_abc_def', `sk_${'g'.repeat(16)}_${'0'.repeat(64)}`, 'x'.repeat(84)])(
    'parseStreamKey(%j) refuses a malformed key',
    (text) => {
      expect(parseStreamKey(text)).toBeUndefined();
    },
  );
});

describe('stream key routes', () => {
  it('POST creates a key shown once; GET shows its id but never the secret; a second POST is 409', async () => {
    await start();
    const created = await post('/api/channels/show/stream-key');
    expect(created.status).toBe(201);
    const issued = issuedStreamKeySchema.parse(await created.json());
    expect(issued.rtmpUrl).toBe('rtmp://127.0.0.1:1935/live');
    expect(issued.playbackUrl).toBe('http://127.0.0.1:8081/live/show/master.m3u8');

    const info = await fetch(`${api!.baseUrl}/api/channels/show/stream-key`, {
      headers: streamer,
    });
    const text = await info.text();
    expect(streamKeyDetailsSchema.parse(JSON.parse(text))).toEqual({
      key: issued.key,
      rtmpUrl: issued.rtmpUrl,
      playbackUrl: issued.playbackUrl,
    });
    expect(text).not.toContain(parseStreamKey(issued.streamKey)!.secret);

    const again = await post('/api/channels/show/stream-key');
    expect(again.status).toBe(409);
  });

  it('rotate issues a new key, refuses the old one and signals streams on the old key to end', async () => {
    const { streams } = await start();
    const first = issuedStreamKeySchema.parse(
      await (await post('/api/channels/rot/stream-key')).json(),
    );
    const grant = await streams.authorizePublish(first.streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    const revoked: string[] = [];
    streams.events.on('keyRevoked', (keyId) => revoked.push(keyId));

    const rotated = await post('/api/channels/rot/stream-key/rotate');
    expect(rotated.status).toBe(200);
    const second = issuedStreamKeySchema.parse(await rotated.json());
    expect(second.streamKey).not.toBe(first.streamKey);
    expect(revoked).toEqual([grant.keyId]);
    await expect(
      streams.authorizePublish(first.streamKey, { ip: '127.0.0.1', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
  });

  it('revoke removes the key: publishing with it is refused and GET is 404', async () => {
    const { streams } = await start();
    const issued = issuedStreamKeySchema.parse(
      await (await post('/api/channels/rev/stream-key')).json(),
    );
    const deleted = await fetch(`${api!.baseUrl}/api/channels/rev/stream-key`, {
      method: 'DELETE',
      headers: streamer,
    });
    expect(deleted.status).toBe(204);
    await expect(
      streams.authorizePublish(issued.streamKey, { ip: '127.0.0.1', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
    const info = await fetch(`${api!.baseUrl}/api/channels/rev/stream-key`, {
      headers: streamer,
    });
    expect(info.status).toBe(404);
  });

  it("DELETE /api/channels/:name revokes the channel's stream key", async () => {
    const { streams } = await start();
    const issued = issuedStreamKeySchema.parse(
      await (await post('/api/channels/gone/stream-key')).json(),
    );
    const revoked: string[] = [];
    streams.events.on('keyRevoked', (keyId) => revoked.push(keyId));
    const deleted = await fetch(`${api!.baseUrl}/api/channels/gone`, {
      method: 'DELETE',
      headers: operator(),
    });
    expect(deleted.status).toBe(204);
    expect(revoked).toEqual([issued.key.id]);
    await expect(
      streams.authorizePublish(issued.streamKey, { ip: '127.0.0.1', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
  });

  it('stream-key routes need credentials (401), the stream grant (403) and a valid channel (400)', async () => {
    await start({ api: { guestGrants: 'join,speak,screen-share' } });
    expect(await errorCode(await post('/api/channels/x/stream-key', {}))).toBe('unauthorized');
    // Guests never hold stream, and neither do members by default.
    expect(await errorCode(await post('/api/channels/x/stream-key', viewer))).toBe('forbidden');
    const member = bearer((await registerAccount(api!.baseUrl, 'member')).accessToken);
    expect(await errorCode(await post('/api/channels/x/stream-key', member))).toBe('forbidden');
    for (const headers of [viewer, member, streamer]) {
      const list = await fetch(`${api!.baseUrl}/api/stream-keys`, { headers });
      expect(await errorCode(list)).toBe('forbidden');
    }
    expect(await errorCode(await post('/api/channels/bad%20name/stream-key'))).toBe('bad_request');
  });

  it('the operator token holds every grant; a wrong token is 401', async () => {
    const token = 'a'.repeat(64);
    await start({ api: { adminToken: token, profile: 'production' } });
    const ok = await post('/api/channels/ops/stream-key', { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(201);
    const list = await fetch(`${api!.baseUrl}/api/stream-keys`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(streamKeyListSchema.parse(await list.json()).keys).toHaveLength(1);
    const wrong = await post('/api/channels/ops/stream-key/rotate', {
      authorization: `Bearer ${'b'.repeat(64)}`,
    });
    expect(await errorCode(wrong)).toBe('unauthorized');
  });
});

describe('publish authorization and live streams', () => {
  it('authorizePublish() refuses unknown and malformed keys, and a second stream on a live channel', async () => {
    const { streams } = await start();
    const issued = await streams.createKey('live1');
    await expect(
      streams.authorizePublish('nope', { ip: '1.2.3.4', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
    const forged = `sk_${issued.key.id}_${'0'.repeat(64)}`;
    await expect(
      streams.authorizePublish(forged, { ip: '1.2.3.4', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });

    const grant = await streams.authorizePublish(issued.streamKey, {
      ip: '1.2.3.4',
      nodeId: 'ingest-a',
    });
    expect(grant).toMatchObject({
      channel: 'live1',
      keyId: issued.key.id,
      storagePrefix: 'live/live1',
    });
    await expect(
      streams.authorizePublish(issued.streamKey, { ip: '1.2.3.4', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'conflict',
    });
    await streams.report('ingest-a', { kind: 'ended', streamId: grant.streamId, reason: 'test' });
    await expect(
      streams.authorizePublish(issued.streamKey, { ip: '1.2.3.4', nodeId: 'ingest-a' }),
    ).resolves.toMatchObject({
      channel: 'live1',
    });
  });

  it('a stream is recorded in stream_history from publish to end', async () => {
    const { streams, database } = await start();
    const issued = await streams.createKey('logged');
    const grant = await streams.authorizePublish(issued.streamKey, {
      ip: '10.0.0.7',
      nodeId: 'ingest-a',
    });
    await streams.report('ingest-a', { kind: 'live', streamId: grant.streamId });
    await streams.report('ingest-a', {
      kind: 'ended',
      streamId: grant.streamId,
      reason: 'publisher left',
    });
    await streams.settle();
    const rows = await database.query(
      'SELECT channel, key_id, publisher_ip, storage_prefix, live_at, ended_at, end_reason FROM stream_history WHERE id = $1',
      [grant.streamId],
    );
    expect(rows).toEqual([
      {
        channel: 'logged',
        key_id: issued.key.id,
        publisher_ip: '10.0.0.7',
        storage_prefix: 'live/logged',
        live_at: expect.any(Date),
        ended_at: expect.any(Date),
        end_reason: 'publisher left',
      },
    ]);
  });

  it('GET /api/channels/:name/stream goes offline -> starting -> live -> ended, with the viewer count', async () => {
    const { streams, baseUrl } = await start();
    const read = async () =>
      channelStreamSchema.parse(
        await (await fetch(`${baseUrl}/api/channels/tv/stream`, { headers: viewer })).json(),
      );
    expect((await read()).stream).toBeNull();

    const issued = await streams.createKey('tv');
    const events = new WebSocket(
      `${baseUrl.replace('http', 'ws')}/ws/events?channel=tv&watch=1&access_token=${tokenOf(viewer)}`,
    );
    const received: { method: string; data: unknown }[] = [];
    events.on('message', (raw) => received.push(JSON.parse(String(raw))));
    await new Promise((resolve) => events.once('open', resolve));
    await expect.poll(async () => (await read()).stream).toBeNull();
    await expect.poll(() => received.length).toBe(1);

    const grant = await streams.authorizePublish(issued.streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    expect((await read()).stream).toMatchObject({ state: 'starting', viewers: 1 });
    await streams.report('ingest-a', {
      kind: 'started',
      streamId: grant.streamId,
      renditions: [
        {
          name: '720p30',
          width: 1280,
          height: 720,
          fps: 30,
          bitrateKbps: 2128,
        },
      ],
    });
    await streams.report('ingest-a', { kind: 'live', streamId: grant.streamId });
    expect((await read()).stream).toMatchObject({
      state: 'live',
      renditions: [{ name: '720p30', width: 1280, height: 720, fps: 30, bitrateKbps: 2128 }],
    });
    const live = await fetch(`${baseUrl}/api/streams`, { headers: viewer });
    expect(liveStreamListSchema.parse(await live.json()).streams).toHaveLength(1);
    await streams.report('ingest-a', {
      kind: 'ended',
      streamId: grant.streamId,
      reason: 'publisher left',
    });
    expect((await read()).stream).toMatchObject({ state: 'ended', endedAt: expect.any(String) });

    await expect
      .poll(() => received.map((message) => message.method))
      .toEqual(['viewerCount', 'streamStarted', 'streamLive', 'streamEnded']);
    for (const message of received) {
      const schema =
        eventNotificationSchemas[message.method as keyof typeof eventNotificationSchemas];
      expect(schema.safeParse(message.data).success).toBe(true);
    }
    events.close();
    await new Promise((resolve) => events.once('close', resolve));
    await expect.poll(async () => (await read()).stream?.viewers).toBe(0);
  });

  it('the events socket counts viewers only for channels that exist', async () => {
    const { streams, baseUrl } = await start();
    const viewers: [string, number][] = [];
    streams.events.on('viewerCount', (channel, count) => viewers.push([channel, count]));
    const socket = new WebSocket(
      `${baseUrl.replace('http', 'ws')}/ws/events?channel=nowhere&watch=1&access_token=${tokenOf(viewer)}`,
    );
    await new Promise((resolve) => socket.once('open', resolve));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.close();
    expect(viewers).toEqual([]);
  });

  it('the events socket refuses an invalid channel with 4400', async () => {
    const { baseUrl } = await start();
    const socket = new WebSocket(
      `${baseUrl.replace('http', 'ws')}/ws/events?channel=../x&access_token=${tokenOf(viewer)}`,
    );
    const code = await new Promise<number>((resolve) => socket.once('close', resolve));
    expect(code).toBe(4400);
  });
});

describe('stream crash recovery', () => {
  async function openRows(database: TestApi['database']): Promise<string[]> {
    const rows = await database.query(
      'SELECT id FROM stream_history WHERE ended_at IS NULL ORDER BY id',
    );
    return rows.map((row) => row.id as string);
  }

  it('replay(): streams the node still runs stay live (again), the others end with their rows', async () => {
    const { streams, database } = await start();
    const kept = await streams.authorizePublish((await streams.createKey('kept')).streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    await streams.authorizePublish((await streams.createKey('lost')).streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    await streams.report('ingest-a', { kind: 'live', streamId: kept.streamId });
    // The node was thought gone (its connection dropped), then came back with one stream.
    await streams.nodeGone('ingest-a', new Date());
    expect(await streams.liveStreams()).toEqual([]);
    await streams.replay('ingest-a', [{ grant: kept, state: 'live', renditions: [] }]);
    await streams.settle();
    expect((await streams.liveStreams()).map((stream) => [stream.id, stream.state])).toEqual([
      [kept.streamId, 'live'],
    ]);
    expect((await streams.channelStream('lost')).stream?.state).toBe('ended');
    expect(await openRows(database)).toEqual([kept.streamId]);
  });

  it('nodeGone() spares streams replayed after the cut; closeStreamsOfGoneNodes() closes rows of nodes not up', async () => {
    const { streams, database } = await start();
    const grant = await streams.authorizePublish((await streams.createKey('race')).streamKey, {
      ip: '127.0.0.1',
      nodeId: 'ingest-a',
    });
    const cut = new Date(Date.now() - 1000);
    await streams.replay('ingest-a', [{ grant, state: 'starting', renditions: [] }]);
    await streams.nodeGone('ingest-a', cut);
    await streams.settle();
    expect((await streams.liveStreams()).map((stream) => stream.id)).toEqual([grant.streamId]);
    expect(await openRows(database)).toEqual([grant.streamId]);
    expect(await streams.closeStreamsOfGoneNodes(new Set(['ingest-a']))).toBe(0);
    expect(await streams.closeStreamsOfGoneNodes(new Set(['ingest-b']))).toBe(1);
    expect(await openRows(database)).toEqual([]);
  });
});
