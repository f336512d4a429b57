import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { channelListSchema, errorBodySchema, voiceCapabilitiesSchema } from '@hearth/protocol';
import { guestSession, operator, sendJson } from './support/accounts';
import { requestJoin, startTestApi, TestSignalingClient, type TestApi } from './support/server';

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function start(options: Parameters<typeof startTestApi>[0] = {}): Promise<TestApi> {
  api = await startTestApi(options);
  return api;
}

async function createChannel(
  base: string,
  name: string,
  headers: Record<string, string> = operator(),
) {
  return fetch(`${base}/api/channels`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ name }),
  });
}

async function expectError(response: Response, status: number, code: string): Promise<string> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/json');
  const body = errorBodySchema.parse(await response.json());
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error.message;
}

describe('health and readiness', () => {
  it('GET /api/health answers ok', async () => {
    const { baseUrl } = await start();
    const response = await fetch(`${baseUrl}/api/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok', checks: { process: true } });
  });

  it('GET /api/ready is 503 until the web app is built, then 200', async () => {
    const { baseUrl, webDistDir } = await start();
    const before = await fetch(`${baseUrl}/api/ready`);
    expect(before.status).toBe(503);
    expect(await before.json()).toEqual({
      status: 'unavailable',
      checks: { voiceNodes: true, webApp: false },
    });
    fs.writeFileSync(path.join(webDistDir, 'index.html'), '<!doctype html><title>t</title>');
    const after = await fetch(`${baseUrl}/api/ready`);
    expect(after.status).toBe(200);
  });

  it('GET /api/ready is 503 while no voice node is up', async () => {
    const { baseUrl, webDistDir } = await start({ api: { embeddedVoice: 'false' } });
    fs.writeFileSync(path.join(webDistDir, 'index.html'), '<!doctype html><title>t</title>');
    const response = await fetch(`${baseUrl}/api/ready`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      status: 'unavailable',
      checks: { voiceNodes: false, webApp: true },
    });
  });
});

describe('channels', () => {
  it('POST then GET /api/channels lists the channel; DELETE removes it', async () => {
    const { baseUrl } = await start();
    const created = await createChannel(baseUrl, 'lobby');
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ name: 'lobby', participants: [] });

    const viewer = await guestSession(baseUrl, 'viewer');
    const list = channelListSchema.parse(
      await (await fetch(`${baseUrl}/api/channels`, { headers: viewer })).json(),
    );
    expect(list.channels.map((channel) => channel.name)).toEqual(['lobby']);

    const deleted = await fetch(`${baseUrl}/api/channels/lobby`, {
      method: 'DELETE',
      headers: operator(),
    });
    expect(deleted.status).toBe(204);
    await expectError(
      await fetch(`${baseUrl}/api/channels/lobby`, { headers: viewer }),
      404,
      'not_found',
    );
    await expectError(
      await fetch(`${baseUrl}/api/channels/lobby`, { method: 'DELETE', headers: operator() }),
      404,
      'not_found',
    );
  });

  it('GET /api/channels lists live participants', async () => {
    const { baseUrl } = await start();
    const client = await TestSignalingClient.connect(baseUrl, 'Alice', { channel: 'games' });
    const caps = await client.request('getRouterRtpCapabilities');
    expect(caps).toMatchObject({ ok: true });
    const joined = await client.request('join', {
      channel: 'games',
      rtpCapabilities: (caps as { data: { rtpCapabilities: unknown } }).data.rtpCapabilities,
    });
    expect(joined).toMatchObject({ ok: true });
    const list = channelListSchema.parse(
      await (
        await fetch(`${baseUrl}/api/channels`, { headers: await guestSession(baseUrl, 'viewer') })
      ).json(),
    );
    expect(list.channels).toEqual([
      {
        name: 'games',
        createdAt: expect.any(String),
        private: false,
        maxSharePreset: 'source',
        shareRouting: 'auto',
        participants: [
          expect.objectContaining({ displayName: 'Alice', muted: false, guest: true, rank: 0 }),
        ],
      },
    ]);
    client.close();
  });

  it('DELETE /api/channels/:name closes the live channel and tells its peers', async () => {
    const { baseUrl, voice } = await start();
    const client = await TestSignalingClient.connect(baseUrl, 'Alice', { channel: 'doomed' });
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    await client.request('join', { channel: 'doomed', rtpCapabilities: caps.data.rtpCapabilities });
    const deleted = await fetch(`${baseUrl}/api/channels/doomed`, {
      method: 'DELETE',
      headers: operator(),
    });
    expect(deleted.status).toBe(204);
    const notice = await client.waitFor(
      (m) => m.kind === 'notification' && m.method === 'channelClosed',
    );
    expect(notice).toMatchObject({ data: { reason: 'deleted' } });
    expect(voice!.channels.list()).toEqual([]);
    client.close();
  });

  it('POST /api/channels without credentials is 401', async () => {
    const { baseUrl } = await start();
    await expectError(await createChannel(baseUrl, 'x', {}), 401, 'unauthorized');
  });

  it('POST /api/channels without the moderate grant is 403, for guests in every profile', async () => {
    const { baseUrl } = await start();
    const pleb = await guestSession(baseUrl, 'pleb');
    await expectError(await createChannel(baseUrl, 'x', pleb), 403, 'forbidden');
    expect((await createChannel(baseUrl, 'x')).status).toBe(201);
    await expectError(
      await fetch(`${baseUrl}/api/channels/x`, { method: 'DELETE', headers: pleb }),
      403,
      'forbidden',
    );
  });

  it('POST /api/voice/join to an unknown channel is 404 unless the caller may create it', async () => {
    const { baseUrl } = await start();
    const join = async (headers: Record<string, string>) =>
      sendJson(`${baseUrl}/api/voice/join`, 'POST', { channel: 'typo' }, headers);
    expect(
      await expectError(await join(await guestSession(baseUrl, 'Ada')), 404, 'not_found'),
    ).toContain('typo');
    const list = async () =>
      channelListSchema.parse(
        await (await fetch(`${baseUrl}/api/channels`, { headers: operator() })).json(),
      ).channels;
    expect(await list()).toEqual([]);
    expect((await join(operator())).status).toBe(200);
    expect((await list()).map((channel) => channel.name)).toEqual(['typo']);
  });

  it('POST /api/channels refuses a bad name, a bad body and a duplicate with clear errors', async () => {
    const { baseUrl } = await start();
    const badName = await expectError(
      await createChannel(baseUrl, 'no spaces'),
      400,
      'bad_request',
    );
    expect(badName).toContain('name:');
    const notJson = await fetch(`${baseUrl}/api/channels`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...operator() },
      body: '{"name":',
    });
    expect(await expectError(notJson, 400, 'bad_request')).toContain('not valid JSON');
    const wrongType = await fetch(`${baseUrl}/api/channels`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', ...operator() },
      body: 'lobby',
    });
    await expectError(wrongType, 400, 'bad_request');
    expect((await createChannel(baseUrl, 'dup')).status).toBe(201);
    await expectError(await createChannel(baseUrl, 'dup'), 409, 'conflict');
  });

  it('an unknown /api path is a JSON 404', async () => {
    const { baseUrl } = await start();
    await expectError(await fetch(`${baseUrl}/api/nope`), 404, 'not_found');
  });

  it('the old `Authorization: Guest <name>` header is refused with 401', async () => {
    const { baseUrl } = await start();
    const guestHeader = { authorization: 'Guest Alice' };
    await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: guestHeader }),
      401,
      'unauthorized',
    );
    await expectError(await createChannel(baseUrl, 'x', guestHeader), 401, 'unauthorized');
    await expect(requestJoin(baseUrl, 'Alice', 'lobby', guestHeader)).rejects.toThrow(
      /join refused with 401/,
    );
  });

  it('with guest access off (production profile), no guest session starts and old ones are refused', async () => {
    // A guest session started while guest access was on (same signing secret).
    const before = await startTestApi();
    const stale = await guestSession(before.baseUrl, 'Alice');
    await before.close();
    const { baseUrl } = await start({ api: { profile: 'production' } });
    await expectError(
      await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: 'Alice' }),
      403,
      'forbidden',
    );
    await expectError(
      await fetch(`${baseUrl}/api/channels`, { headers: stale }),
      401,
      'unauthorized',
    );
    await expect(requestJoin(baseUrl, 'Alice', 'lobby', stale)).rejects.toThrow(
      /join refused with 401/,
    );
  });

  it('REST calls beyond the rate limit get 429', async () => {
    const { baseUrl } = await start({ api: { restRatePerSecond: '5' } });
    const viewer = await guestSession(baseUrl, 'viewer');
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${baseUrl}/api/channels`, { headers: viewer }).then((r) => r.status),
      ),
    );
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(10);
  });
});

describe('voice capabilities', () => {
  it('GET /api/voice/capabilities offers Opus with in-band FEC and DTX', async () => {
    const { baseUrl } = await start();
    const response = await fetch(`${baseUrl}/api/voice/capabilities`);
    expect(response.status).toBe(200);
    const body = voiceCapabilitiesSchema.parse(await response.json());
    const opus = body.rtpCapabilities.codecs?.find((codec) => codec.mimeType === 'audio/opus');
    expect(opus).toMatchObject({
      clockRate: 48000,
      channels: 2,
      parameters: { useinbandfec: 1, usedtx: 1 },
    });
  });
});

describe('web app', () => {
  it('serves index.html for client routes such as /voice/<channel>', async () => {
    const { baseUrl, webDistDir } = await start();
    fs.writeFileSync(path.join(webDistDir, 'index.html'), '<!doctype html><title>hearth</title>');
    const response = await fetch(`${baseUrl}/voice/lobby?name=A&autojoin=1`, {
      headers: { accept: 'text/html' },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('<title>hearth</title>');
  });

  it('GET /metrics exposes voice metrics', async () => {
    const { baseUrl } = await start();
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(text).toContain('voice_channels_active 0');
    expect(text).toMatch(/voice_worker_cpu_seconds\{worker="0"\} \d/);
    expect(text).toMatch(/voice_worker_max_rss_bytes\{worker="0"\} [1-9]\d*/);
  });
});
