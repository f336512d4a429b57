import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { channelSchema, channelStreamSchema, guestSessionSchema } from '@hearth/protocol';
import { vp8SimulcastRtpParameters } from '../../voice-sfu/test/support/rtp';
import {
  bearer,
  expectError,
  guestSession,
  loginAccount,
  operator,
  registerAccount,
  sendJson,
} from './support/accounts';
import { startTestApi, TestSignalingClient, type TestApi } from './support/server';
import { joinOnSocket } from './support/voice-faults';

let api: TestApi | undefined;
const clients: TestSignalingClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await api?.close();
  api = undefined;
});

// Joins `channel` over signaling as a guest, or as a spectator; resolves with the join response.
async function join(name: string, options: { spectate?: boolean } = {}) {
  const client = await TestSignalingClient.connect(api!.baseUrl, name, {
    channel: 'stage',
    spectate: options.spectate,
  });
  clients.push(client);
  return { client, ...(await joinOnSocket(client, 'stage')) };
}

// Starts sharing for a joined participant, through an in-process transport (opened once): the
// api sees it as any share.
const sendTransports = new Map<string, string>();
async function share(peerId: string) {
  const channel = api!.voice!.channels.get('stage')!;
  let transportId = sendTransports.get(peerId);
  if (!transportId) {
    transportId = (await channel.createPlainTransport(peerId, 'send')).id;
    sendTransports.set(peerId, transportId);
  }
  return channel.produce(peerId, {
    transportId,
    kind: 'video',
    source: 'screen',
    rtpParameters: vp8SimulcastRtpParameters([
      { ssrc: 6001, maxBitrate: 600_000 },
      { ssrc: 6002, maxBitrate: 4_000_000 },
    ]),
  });
}

async function channelStream() {
  const response = await fetch(`${api!.baseUrl}/api/channels/stage/stream`, {
    headers: await guestSession(api!.baseUrl, 'Reader'),
  });
  expect(response.status).toBe(200);
  return channelStreamSchema.parse(await response.json());
}

describe('spectators and share settings through the api', () => {
  it('a spectator joins receive-only and out of the roster; the stream status names the live share', async () => {
    api = await startTestApi({ api: { guestGrants: 'join,speak,screen-share' } });
    const sue = await join('Sue');
    expect(sue).toMatchObject({ spectator: false, maxSharePreset: 'source' });
    const spectator = await join('Spec', { spectate: true });
    expect(spectator.spectator).toBe(true);

    const send = await spectator.client.request('createTransport', { direction: 'send' });
    expect(send).toMatchObject({
      ok: false,
      error: { code: 'forbidden', message: 'spectators only receive' },
    });
    const listed = await fetch(`${api.baseUrl}/api/channels/stage`, { headers: operator() });
    expect(
      channelSchema
        .parse(await listed.json())
        .participants.map((participant) => participant.displayName),
    ).toEqual(['Sue']);
    expect((await channelStream()).share).toBeNull();

    await share(sue.peerId);
    await spectator.client.waitFor(
      (message) =>
        message.kind === 'notification' &&
        message.method === 'participantUpdated' &&
        (message.data as { participant: { sharing: boolean } }).participant.sharing,
    );
    for (let attempt = 0; (await channelStream()).share === null; attempt++) {
      expect(attempt).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await channelStream()).share).toEqual({
      peerId: sue.peerId,
      displayName: 'Sue',
      broadcast: false,
      moveWebrtc: false,
    });

    // Bridged, and the policy sends spectators to HLS: they are told so; moderators are not.
    const grant = await api.streams.claimBridge('stage', sue.peerId, {
      voiceNodeId: 'voice-a',
      ingestNodeId: 'ingest-a',
    });
    await api.streams.report('ingest-a', { kind: 'live', streamId: grant.streamId });
    expect((await channelStream()).share?.broadcast).toBe(false);
    await api.streams.routeShareAudience(grant.streamId, { toStream: true, moveWebrtc: false });
    expect((await channelStream()).share).toMatchObject({ broadcast: true, moveWebrtc: false });
    // The share's voice node is overloaded: those on WebRTC are told to move too.
    await api.streams.routeShareAudience(grant.streamId, { toStream: true, moveWebrtc: true });
    expect((await channelStream()).share).toMatchObject({ broadcast: true, moveWebrtc: true });
    const moderatorView = await fetch(`${api.baseUrl}/api/channels/stage/stream`, {
      headers: operator(),
    });
    expect(channelStreamSchema.parse(await moderatorView.json()).share).toMatchObject({
      broadcast: false,
      moveWebrtc: false,
    });
    // Back below the release threshold: nobody is sent there any more.
    await api.streams.routeShareAudience(grant.streamId, { toStream: false, moveWebrtc: true });
    expect((await channelStream()).share).toMatchObject({ broadcast: false, moveWebrtc: false });
  });

  it('the events socket tells watch pages when a share starts and ends, however it ends', async () => {
    api = await startTestApi({ api: { guestGrants: 'join,speak,screen-share' } });
    const sue = await join('Sue');
    const { accessToken } = guestSessionSchema.parse(
      await (
        await sendJson(`${api.baseUrl}/api/auth/guest`, 'POST', { displayName: 'Watcher' })
      ).json(),
    );
    const socket = new WebSocket(
      `${api.baseUrl.replace('http', 'ws')}/ws/events?channel=stage&access_token=${accessToken}`,
    );
    const received: { method: string; data: Record<string, unknown> }[] = [];
    socket.on('message', (raw) => received.push(JSON.parse(String(raw))));
    const shareEvents = () =>
      received
        .filter((message) => message.method.startsWith('share'))
        .map(({ method, data }) => ({ method, ...data }));
    try {
      // The first viewer count says the socket listens.
      await expect.poll(() => received.map((message) => message.method)).toContain('viewerCount');
      const video = await share(sue.peerId);
      const started = { channel: 'stage', peerId: sue.peerId, displayName: 'Sue' };
      await expect.poll(shareEvents).toEqual([{ method: 'shareStarted', ...started }]);
      api.voice!.channels.get('stage')!.closeProducer(sue.peerId, video.id);
      await expect.poll(shareEvents).toEqual([
        { method: 'shareStarted', ...started },
        { method: 'shareEnded', ...started },
      ]);
      // A sharer who leaves ends its share too.
      await share(sue.peerId);
      sue.client.close();
      await expect
        .poll(() => shareEvents().map((event) => event.method))
        .toEqual(['shareStarted', 'shareEnded', 'shareStarted', 'shareEnded']);
    } finally {
      socket.close();
    }
  });

  it('moderators cap the share preset of a channel; joins from then on carry the cap', async () => {
    api = await startTestApi({ api: { guestGrants: 'join,speak,screen-share' } });
    await join('Early');
    const url = `${api.baseUrl}/api/channels/stage`;
    await expectError(
      await sendJson(
        url,
        'PATCH',
        { maxSharePreset: '720p30' },
        await guestSession(api.baseUrl, 'Gus'),
      ),
      403,
      'forbidden',
    );
    await expectError(
      await sendJson(url, 'PATCH', { maxSharePreset: '8k' }, operator()),
      400,
      'bad_request',
    );
    await expectError(await sendJson(url, 'PATCH', {}, operator()), 400, 'bad_request');

    const changed = await sendJson(url, 'PATCH', { maxSharePreset: '720p30' }, operator());
    expect(changed.status).toBe(200);
    expect(channelSchema.parse(await changed.json())).toMatchObject({
      private: false,
      maxSharePreset: '720p30',
    });
    expect(await join('Late')).toMatchObject({ maxSharePreset: '720p30' });
  });

  it("operators route a channel's share audience; a channel moderator may not", async () => {
    api = await startTestApi();
    await join('Early');
    const url = `${api.baseUrl}/api/channels/stage/share-routing`;
    // The first account is the owner; the second moderates this channel only.
    await registerAccount(api.baseUrl, 'olive');
    await registerAccount(api.baseUrl, 'mod');
    const granted = await sendJson(
      `${api.baseUrl}/api/admin/users/mod/grants/stage`,
      'PUT',
      { grants: ['join', 'moderate'] },
      operator(),
    );
    expect(granted.status).toBe(200);
    const { accessToken } = await loginAccount(api.baseUrl, 'mod');
    await expectError(
      await sendJson(url, 'PUT', { routing: 'broadcast' }, bearer(accessToken)),
      403,
      'forbidden',
    );
    await expectError(
      await sendJson(url, 'PUT', { routing: 'sideways' }, operator()),
      400,
      'bad_request',
    );
    const routed = await sendJson(url, 'PUT', { routing: 'webrtc' }, operator());
    expect(routed.status).toBe(200);
    expect(channelSchema.parse(await routed.json())).toMatchObject({ shareRouting: 'webrtc' });
    const listed = await fetch(`${api.baseUrl}/api/channels/stage`, { headers: operator() });
    expect(channelSchema.parse(await listed.json()).shareRouting).toBe('webrtc');
  });
});
