import { afterEach, describe, expect, it } from 'vitest';
import { JoinTokenIssuer } from '@hearth/server-common';
import { channelLinksSchema } from '@hearth/protocol';
import { ensureChannel, expectError, guestSession, operator, sendJson } from './support/accounts';
import { requestJoin, startTestApi, TestSignalingClient, type TestApi } from './support/server';

let api: TestApi | undefined;
const clients: TestSignalingClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await api?.close();
  api = undefined;
});

async function start(options: Parameters<typeof startTestApi>[0] = {}): Promise<TestApi> {
  api = await startTestApi(options);
  return api;
}

async function connect(
  name: string,
  options: { channel?: string; headers?: Record<string, string> } = {},
): Promise<TestSignalingClient> {
  const client = await TestSignalingClient.connect(api!.baseUrl, name, options);
  clients.push(client);
  return client;
}

async function openWithToken(token: string): Promise<TestSignalingClient> {
  const client = await TestSignalingClient.open(
    `${api!.baseUrl.replace('http', 'ws')}/ws/voice?token=${encodeURIComponent(token)}`,
  );
  clients.push(client);
  return client;
}

async function joinAs(
  name: string,
  channel = 'lobby',
): Promise<TestSignalingClient & { peerId: string }> {
  const client = await connect(name, { channel });
  const caps = (await client.request('getRouterRtpCapabilities')) as {
    data: { rtpCapabilities: unknown };
  };
  const joined = await client.request('join', {
    channel,
    rtpCapabilities: caps.data.rtpCapabilities,
  });
  expect(joined).toMatchObject({ ok: true });
  return Object.assign(client, { peerId: (joined as { data: { peerId: string } }).data.peerId });
}

// Resolves with the code and reason the server closes a client's socket with.
function closeOf(client: TestSignalingClient): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    client.socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
}

function errorOf(message: unknown): { code: string; message: string } {
  expect(message).toMatchObject({ kind: 'response', ok: false });
  return (message as { error: { code: string; message: string } }).error;
}

describe('signaling validation', () => {
  it('a message that is not JSON gets bad_request with a null id, and the connection survives', async () => {
    await start();
    const client = await connect('Alice');
    client.sendRaw('{nope');
    const reply = await client.waitFor((m) => m.kind === 'response' && m.id === null);
    expect(errorOf(reply)).toEqual({ code: 'bad_request', message: 'message is not valid JSON' });
    expect(await client.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
  });

  it('an envelope with a bad shape gets bad_request naming the field, echoing a usable id', async () => {
    await start();
    const client = await connect('Alice');
    client.sendRaw(JSON.stringify({ kind: 'request', id: 7, method: 42 }));
    const reply = await client.waitFor((m) => m.kind === 'response' && m.id === 7);
    const error = errorOf(reply);
    expect(error.code).toBe('bad_request');
    expect(error.message).toContain('method:');
  });

  it('an unknown method gets unknown_method', async () => {
    await start();
    const client = await connect('Alice');
    const error = errorOf(await client.request('fly', {}));
    expect(error).toEqual({ code: 'unknown_method', message: 'unknown method "fly"' });
  });

  it('invalid data gets bad_request naming the method and field', async () => {
    await start();
    const client = await connect('Alice');
    const error = errorOf(await client.request('join', { channel: '../x', rtpCapabilities: {} }));
    expect(error.code).toBe('bad_request');
    expect(error.message).toMatch(/^invalid join data: channel:/);
  });

  it('a request that needs a channel before join gets not_joined', async () => {
    await start();
    const client = await connect('Alice');
    expect(errorOf(await client.request('createTransport', { direction: 'send' })).code).toBe(
      'not_joined',
    );
  });

  it('a second join on one connection gets already_joined', async () => {
    await start();
    const client = await joinAs('Alice');
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    const again = await client.request('join', {
      channel: 'other',
      rtpCapabilities: caps.data.rtpCapabilities,
    });
    expect(errorOf(again).code).toBe('already_joined');
  });

  it('rtpParameters that mediasoup rejects get bad_request, not a crash', async () => {
    await start();
    const client = await joinAs('Alice');
    const transport = (await client.request('createTransport', { direction: 'send' })) as {
      data: { id: string };
    };
    const reply = await client.request('produce', {
      transportId: transport.data.id,
      kind: 'audio',
      rtpParameters: { codecs: [{ mimeType: 'audio/none', payloadType: 100, clockRate: 8000 }] },
    });
    expect(errorOf(reply).code).toBe('bad_request');
    expect(await client.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
  });

  it("one client's malformed messages never reach another client", async () => {
    await start();
    const alice = await joinAs('Alice');
    const bob = await joinAs('Bob');
    const aliceBefore = alice.messages.length;
    for (let i = 0; i < 20; i++) bob.sendRaw(i % 2 ? '[]' : '\u0000garbage');
    await bob.waitFor((m) => m.kind === 'response' && m.ok === false);
    expect(await alice.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
    // Alice saw only her own response since Bob's noise started.
    expect(alice.messages.slice(aliceBefore).filter((m) => m.kind === 'notification')).toEqual([]);
    expect(bob.socket.readyState).toBe(bob.socket.OPEN);
  });

  it('a client over the rate limit gets rate_limited while others are served', async () => {
    await start({ voice: { signalingRatePerSecond: 10, signalingBurst: 20 } });
    const flooder = await connect('Flood');
    const calm = await connect('Calm');
    for (let i = 0; i < 60; i++) {
      flooder.sendRaw(
        JSON.stringify({ kind: 'request', id: 1000 + i, method: 'getRouterRtpCapabilities' }),
      );
    }
    await flooder.waitFor(
      (m) => m.kind === 'response' && m.ok === false && m.error.code === 'rate_limited',
    );
    const limited = flooder.messages.filter((m) => m.kind === 'response' && m.ok === false);
    expect(limited.length).toBeGreaterThanOrEqual(30);
    // Each refusal answers its own request, so the client can fail that call at once.
    for (const message of limited) expect(message.id).toBeGreaterThanOrEqual(1000);
    expect(await calm.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
  });

  it('statistics reports: bounded by the schema, one a second at most, and the node exposes what they measured without naming anyone', async () => {
    await start();
    const client = await joinAs('Alice');
    const report = {
      windowMs: 5000,
      packetsReceived: 240,
      packetsLost: 10,
      jitterMs: 12,
      jitterBufferDelayMs: 60,
      concealedRatio: 0.02,
      rttMs: 80,
      outboundKbps: 32,
    };
    expect(await client.request('reportStats', report)).toMatchObject({ ok: true });
    expect(errorOf(await client.request('reportStats', report)).code).toBe('rate_limited');
    expect(errorOf(await client.request('reportStats', { ...report, jitterMs: -1 })).code).toBe(
      'bad_request',
    );
    expect(errorOf(await client.request('reportStats', { ...report, packetsLost: 1e9 })).code).toBe(
      'bad_request',
    );
    expect(errorOf(await client.request('reportStats', { ...report, extra: 1 })).code).toBe(
      'bad_request',
    );

    const metrics = await (await fetch(`${api!.baseUrl}/metrics`)).text();
    // Latency is half the round trip plus the jitter buffer: 40 + 60 ms.
    expect(metrics).toMatch(/^voice_latency_ms_bucket\{le="100"\} 1$/m);
    expect(metrics).toMatch(/^voice_latency_ms_bucket\{le="50"\} 0$/m);
    expect(metrics).toMatch(/^voice_jitter_ms_count 1$/m);
    expect(metrics).toMatch(/^voice_packet_loss_percent 4$/m);
    expect(metrics).toMatch(/^voice_joins_total 1$/m);
    expect(metrics).toMatch(/^voice_errors_total\{code="rate_limited"\} 1$/m);
    // Refusals by the schema count as much as those of a handler.
    expect(metrics).toMatch(/^voice_errors_total\{code="bad_request"\} 3$/m);
    expect(metrics).not.toContain('Alice');
  });

  it('moderators read each participant’s link, worst first, as the voice node reports them; others may not', async () => {
    await start();
    const [alice, bob] = [await joinAs('Alice'), await joinAs('Bob')];
    const clean = {
      windowMs: 5000,
      packetsReceived: 250,
      packetsLost: 0,
      jitterMs: 4,
      jitterBufferDelayMs: 40,
      concealedRatio: 0,
      rttMs: 40,
      outboundKbps: 32,
    };
    expect(await alice.request('reportStats', clean)).toMatchObject({ ok: true });
    expect(
      await bob.request('reportStats', { ...clean, packetsReceived: 200, packetsLost: 50 }),
    ).toMatchObject({ ok: true });
    const links = async () => {
      const response = await fetch(`${api!.baseUrl}/api/channels/lobby/links`, {
        headers: operator(),
      });
      expect(response.status).toBe(200);
      return channelLinksSchema.parse(await response.json()).links;
    };
    // The node sends its links every 5 s.
    await expect.poll(async () => (await links()).length, { timeout: 10_000 }).toBe(2);
    expect(await links()).toMatchObject([
      { peerId: bob.peerId, displayName: 'Bob', quality: 'poor', lossPercent: 20 },
      { peerId: alice.peerId, displayName: 'Alice', quality: 'good', lossPercent: 0, rttMs: 40 },
    ]);
    const asGuest = await fetch(`${api!.baseUrl}/api/channels/lobby/links`, {
      headers: await guestSession(api!.baseUrl, 'Curious'),
    });
    expect(asGuest.status).toBe(403);
  });

  it('a WebSocket from a foreign origin is refused', async () => {
    await start();
    const client = await connect('Alice', { headers: { origin: 'https://evil.example' } });
    expect(await client.closed()).toBe(4403);
  });

  it('a bad display name is refused when starting the guest session, before any join', async () => {
    await start();
    for (const displayName of [' ', '\u200b\u202e', 'x'.repeat(33)]) {
      const message = await expectError(
        await sendJson(`${api!.baseUrl}/api/auth/guest`, 'POST', { displayName }),
        400,
        'bad_request',
      );
      expect(message).toContain('displayName');
    }
  });
});

describe('join tokens', () => {
  it('a socket without a token, or with one signed by another key, is closed with 4401', async () => {
    await start();
    expect(await (await openWithToken('')).closed()).toBe(4401);
    // Signed for this very node and channel, but with a key the api does not hold.
    const placement = await requestJoin(api!.baseUrl, 'Alice', 'lobby');
    const forged = new JoinTokenIssuer('another-api-secret-0123456789abcdef0123456789').sign({
      sub: 'guest:x',
      name: 'Mallory',
      guest: true,
      channel: 'lobby',
      node: placement.nodeId,
      grants: ['join', 'speak', 'moderate'],
      core: placement.nodeId,
      rank: 5,
      serverMuted: false,
    });
    const refused = await openWithToken(forged.token);
    const close = await closeOf(refused);
    expect(close.code).toBe(4401);
    expect(close.reason).toMatch(/join token/);
  });

  it('a join token admits one connection: replaying it is refused with a clear reason', async () => {
    await start();
    const placement = await requestJoin(api!.baseUrl, 'Alice', 'lobby');
    const first = await openWithToken(placement.token);
    expect(await first.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
    const replay = await openWithToken(placement.token);
    expect(await closeOf(replay)).toEqual({
      code: 4401,
      reason: 'join token already used; ask the api for a new one',
    });
    // The first connection is unharmed, and closing it does not make the token good again.
    expect(await first.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
    first.close();
    await first.closed();
    expect((await closeOf(await openWithToken(placement.token))).code).toBe(4401);
    // A fresh token from the api works.
    const fresh = await requestJoin(api!.baseUrl, 'Alice', 'lobby');
    const again = await openWithToken(fresh.token);
    expect(await again.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });
  });

  it('a token admits to its own channel only', async () => {
    await start();
    const client = await connect('Alice', { channel: 'lobby' });
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    const elsewhere = await client.request('join', {
      channel: 'secret',
      rtpCapabilities: caps.data.rtpCapabilities,
    });
    expect(errorOf(elsewhere)).toMatchObject({ code: 'forbidden' });
    expect(
      await client.request('join', {
        channel: 'lobby',
        rtpCapabilities: caps.data.rtpCapabilities,
      }),
    ).toMatchObject({ ok: true });
  });

  it('joins beyond the per-address rate get 429', async () => {
    await start({ api: { joinRatePerSecond: '1' } });
    await ensureChannel(api!.baseUrl, 'lobby');
    const guests = await Promise.all(
      Array.from({ length: 6 }, (_, index) => guestSession(api!.baseUrl, `Guest${index}`)),
    );
    const statuses = await Promise.all(
      guests.map((headers) =>
        sendJson(`${api!.baseUrl}/api/voice/join`, 'POST', { channel: 'lobby' }, headers).then(
          (response) => response.status,
        ),
      ),
    );
    expect(statuses.filter((status) => status === 200).length).toBe(2);
    expect(statuses.filter((status) => status === 429).length).toBe(4);
  });

  it('joining needs the join grant in the channel: 401 without credentials, 403 without it', async () => {
    await start({ api: { guestGrants: 'speak' } });
    const anonymous = await fetch(`${api!.baseUrl}/api/voice/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'lobby' }),
    });
    expect(anonymous.status).toBe(401);
    await expect(requestJoin(api!.baseUrl, 'Alice', 'lobby')).rejects.toThrow(
      /join refused with 403/,
    );
  });
});

describe('signaling lifecycle', () => {
  it('a dropped connection removes the peer and tells the others', async () => {
    const { voice } = await start();
    const alice = await joinAs('Alice');
    const bob = await joinAs('Bob');
    bob.socket.terminate();
    const left = await alice.waitFor(
      (m) => m.kind === 'notification' && m.method === 'participantLeft',
    );
    expect(left).toMatchObject({ data: { peerId: bob.peerId } });
    expect(
      voice!.channels
        .get('lobby')!
        .participants()
        .map((p) => p.displayName),
    ).toEqual(['Alice']);
  });

  it('leave keeps the connection open for another join; the empty channel closes', async () => {
    const { voice } = await start();
    const alice = await joinAs('Alice');
    expect(await alice.request('leave')).toMatchObject({ ok: true });
    expect(voice!.channels.list()).toEqual([]);
    const caps = (await alice.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    expect(
      await alice.request('join', { channel: 'lobby', rtpCapabilities: caps.data.rtpCapabilities }),
    ).toMatchObject({
      ok: true,
    });
  });

  it('restartIce gives a transport fresh ICE credentials; an unknown transport is not_found', async () => {
    await start();
    const client = await joinAs('Alice');
    const created = (await client.request('createTransport', { direction: 'recv' })) as {
      data: { id: string; iceParameters: { usernameFragment: string; password: string } };
    };
    const restarted = (await client.request('restartIce', { transportId: created.data.id })) as {
      data: { iceParameters: { usernameFragment: string; password: string } };
    };
    expect(restarted.data.iceParameters.usernameFragment).not.toBe(
      created.data.iceParameters.usernameFragment,
    );
    expect(restarted.data.iceParameters.password).not.toBe(created.data.iceParameters.password);
    expect(errorOf(await client.request('restartIce', { transportId: 'nope' })).code).toBe(
      'not_found',
    );
  });

  it('a consumer reaches the listener paused with a newConsumer notification', async () => {
    await start();
    const listener = await joinAs('Listener');
    await listener.request('createTransport', { direction: 'recv' });
    const speaker = await joinAs('Speaker');
    const send = (await speaker.request('createTransport', { direction: 'send' })) as {
      data: { id: string };
    };
    const produced = await speaker.request('produce', {
      transportId: send.data.id,
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
        encodings: [{ ssrc: 1111 }],
      },
    });
    expect(produced).toMatchObject({ ok: true });
    const notice = await listener.waitFor(
      (m) => m.kind === 'notification' && m.method === 'newConsumer',
    );
    expect(notice).toMatchObject({
      data: {
        peerId: speaker.peerId,
        producerId: (produced as { data: { producerId: string } }).data.producerId,
        kind: 'audio',
        rtpParameters: { codecs: [expect.objectContaining({ mimeType: 'audio/opus' })] },
      },
    });
    const { consumerId } = (notice as { data: { consumerId: string } }).data;
    expect(await listener.request('resumeConsumer', { consumerId })).toMatchObject({ ok: true });
    expect(errorOf(await listener.request('resumeConsumer', { consumerId: 'nope' })).code).toBe(
      'not_found',
    );
  });
});
