import type dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgeOfferSchema, type BridgeOffer, type ShareCapture } from '@hearth/protocol';
import { SrtpContext, rtpHeaderBytes } from '@hearth/server-common';
import type { ChannelEvents } from '../src/channel-types';
import { voiceConfig } from '../src/config';
import { ShareBridge, type ShareBridgeCloseReason } from '../src/share-bridge';
import { VoiceNode } from '../src/voice-node';
import { RecordingSink, quietLogger, testIdentity, waitFor } from './support/plain-peers';
import { bindUdpPair, opusProducerRtpParameters, vp8SimulcastRtpParameters } from './support/rtp';
import {
  MICROPHONE_SSRC,
  SHARE_LAYERS,
  startPlainShare,
  type PlainShare,
} from './support/plain-share';

const LAYERS = SHARE_LAYERS;
const TOP = LAYERS.length - 1;
// Opus frames from `buildOpusPacket` end in this many zero bytes.
const OPUS_ZERO_TAIL_BYTES = 16;

const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

const startShare = () => startPlainShare(cleanups);

/** Opens a bridge of a share and closes it when the test ends. */
async function openBridge(share: PlainShare, srtp: boolean): Promise<ShareBridge> {
  const bridge = await ShareBridge.open({
    router: share.router,
    video: share.video,
    audio: share.audio,
    listenIp: '127.0.0.1',
    srtp,
    logger: quietLogger,
  });
  cleanups.push(() => bridge.close());
  return bridge;
}

/** What an ingest node's ffmpeg opens for one media line: RTP on an even port, RTCP above it. */
class StreamReceiver {
  /** RTP packets in arrival order. */
  readonly rtp: Buffer[] = [];
  /** RTCP packets in arrival order, with where they came from. */
  readonly rtcp: { packet: Buffer; from: dgram.RemoteInfo }[] = [];
  readonly #rtpSocket: dgram.Socket;
  readonly #rtcpSocket: dgram.Socket;

  private constructor(rtpSocket: dgram.Socket, rtcpSocket: dgram.Socket) {
    this.#rtpSocket = rtpSocket;
    this.#rtcpSocket = rtcpSocket;
    rtpSocket.on('message', (packet) => this.rtp.push(packet));
    rtcpSocket.on('message', (packet, from) => this.rtcp.push({ packet, from }));
  }

  /** Binds a free even port and the port above it on loopback. */
  static async bind(): Promise<StreamReceiver> {
    const [rtp, rtcp] = await bindUdpPair();
    const receiver = new StreamReceiver(rtp, rtcp);
    cleanups.push(() => receiver.close());
    return receiver;
  }

  /** The RTP port, as the answer names it. */
  get port(): number {
    return this.#rtpSocket.address().port;
  }

  /** RTCP sender reports received, by the SSRC they report on. */
  senderReportsOf(ssrc: number): number {
    return this.rtcp.filter(({ packet }) => packet[1] === 200 && packet.readUInt32BE(4) === ssrc)
      .length;
  }

  /** Sends RTCP from the RTCP port to where the voice node's RTCP comes from, as ffmpeg does. */
  sendRtcp(packet: Buffer): void {
    const from = this.rtcp.at(-1)?.from;
    if (!from) throw new Error('no RTCP arrived yet: nowhere to answer');
    this.#rtcpSocket.send(packet, from.port, from.address);
  }

  close(): void {
    this.#rtpSocket.close();
    this.#rtcpSocket.close();
  }
}

/** Binds one receiver per stream of an offer. */
async function receiversFor(offer: BridgeOffer): Promise<StreamReceiver[]> {
  const receivers: StreamReceiver[] = [];
  for (let i = 0; i < offer.streams.length; i++) receivers.push(await StreamReceiver.bind());
  return receivers;
}

/** An RTCP picture loss indication (RFC 4585 6.3.1) for a media SSRC. */
function pictureLossIndication(mediaSsrc: number): Buffer {
  const packet = Buffer.alloc(12);
  packet[0] = 0x80 | 1; // Version 2, FMT 1: PLI.
  packet[1] = 206; // Payload-specific feedback.
  packet.writeUInt16BE(2, 2); // Length in 32-bit words minus one.
  packet.writeUInt32BE(1, 4); // Sender SSRC: the receiver sends no media.
  packet.writeUInt32BE(mediaSsrc >>> 0, 8);
  return packet;
}

// What the senders put at the start of a clear payload: a VP8 payload descriptor with I, L and T
// present; Opus frames end in zeros.
function isClearVp8(packet: Buffer): boolean {
  const payload = packet.subarray(rtpHeaderBytes(packet) ?? packet.length);
  return (payload[0]! & 0x80) !== 0 && payload[1] === 0xe0;
}

function isClearOpus(packet: Buffer): boolean {
  return packet.subarray(packet.length - OPUS_ZERO_TAIL_BYTES).every((byte) => byte === 0);
}

describe('ShareBridge', () => {
  it('bridge.connect() sends the top layer of a simulcast share and the microphone as plain RTP, with the SSRCs and payload types of the offer', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, false);
    const { streams } = bridge.offer;
    expect(bridgeOfferSchema.parse(bridge.offer)).toEqual(bridge.offer);
    expect(streams).toMatchObject([
      { role: 'video', mimeType: 'video/VP8', clockRate: 90_000 },
      { role: 'audio', mimeType: 'audio/opus', clockRate: 48_000, channels: 2 },
    ]);
    expect(streams.map((stream) => stream.srtpKeyBase64)).toEqual([undefined, undefined]);
    // The consumers send their own SSRCs, none of the sharer's.
    const sharerSsrcs = [...LAYERS.map((layer) => layer.ssrc), MICROPHONE_SSRC];
    for (const stream of streams) expect(sharerSsrcs).not.toContain(stream.ssrc);

    const [video, audio] = await receiversFor(bridge.offer);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(video!.rtp.length + audio!.rtp.length).toBe(0);
    await bridge.connect({ ip: '127.0.0.1', ports: [video!.port, audio!.port] });
    await waitFor(
      () => video!.rtp.length >= 100 && audio!.rtp.length >= 10,
      5000,
      'RTP on both ports',
    );

    for (const [index, receiver] of [video!, audio!].entries()) {
      const stream = streams[index]!;
      expect(new Set(receiver.rtp.map((packet) => packet.readUInt32BE(8)))).toEqual(
        new Set([stream.ssrc]),
      );
      expect(new Set(receiver.rtp.map((packet) => packet[1]! & 0x7f))).toEqual(
        new Set([stream.payloadType]),
      );
    }
    expect(video!.rtp.every(isClearVp8)).toBe(true);
    expect(audio!.rtp.every(isClearOpus)).toBe(true);
    // Payload types are the router's, whatever the sharer's client picked.
    expect(streams.map((stream) => stream.payloadType)).toEqual(
      streams.map(
        (stream) =>
          share.router.rtpCapabilities.codecs!.find((codec) => codec.mimeType === stream.mimeType)!
            .preferredPayloadType,
      ),
    );

    // Over a window, as many packets arrive as the sharer sent on its top layer, and far more
    // than it sent on the next one.
    const sentBefore = share.vp8.sent;
    const receivedBefore = video!.rtp.length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await share.vp8.stop();
    let settled = -1;
    await waitFor(
      () => {
        const unchanged = settled === video!.rtp.length;
        settled = video!.rtp.length;
        return unchanged;
      },
      5000,
      'the last packets to arrive',
    );
    const sent = share.vp8.sent.map((layer, index) => layer.packets - sentBefore[index]!.packets);
    const received = video!.rtp.length - receivedBefore;
    expect(received).toBeGreaterThan(sent[TOP]! * 0.95);
    expect(received).toBeLessThan(sent[TOP]! * 1.05);
    expect(received).toBeGreaterThan(sent[TOP - 1]! * 2);
    // mediasoup sends its sender reports to the RTCP port of each stream.
    expect(video!.senderReportsOf(streams[0]!.ssrc)).toBeGreaterThan(0);
  });

  it('a PLI from the RTCP port reaches the sharer as a key frame request and counts in stats()', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, false);
    const [video, audio] = await receiversFor(bridge.offer);
    await bridge.connect({ ip: '127.0.0.1', ports: [video!.port, audio!.port] });
    const ssrc = bridge.offer.streams[0]!.ssrc;
    await waitFor(
      () => video!.rtp.length > 0 && video!.senderReportsOf(ssrc) > 0,
      5000,
      'RTP and a sender report of the video',
    );
    const before = await bridge.stats();
    expect(before.map((stream) => stream.role)).toEqual(['video', 'audio']);
    expect(before[0]).toMatchObject({ pliCount: 0, firCount: 0, nackCount: 0 });
    expect(before[0]!.packetsSent).toBeGreaterThan(0);
    expect(before[0]!.bytesSent).toBeGreaterThan(0);
    const keyFrames = share.vp8.sent[TOP]!.keyFrames;

    video!.sendRtcp(pictureLossIndication(ssrc));
    await waitFor(
      () => share.vp8.sent[TOP]!.keyFrames > keyFrames,
      5000,
      'the sharer to send a key frame of its top layer',
    );
    await waitFor(
      async () => (await bridge.stats())[0]!.pliCount > 0,
      5000,
      'stats() to count the PLI',
    );
    expect((await bridge.stats())[0]).toMatchObject({ role: 'video', pliCount: 1, firCount: 0 });
  });

  it('with srtp each stream has its own 40-character key, and what arrives is encrypted with it', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, true);
    const { streams } = bridge.offer;
    const keys = streams.map((stream) => stream.srtpKeyBase64);
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9+/]{40}$/);
    expect(new Set(keys).size).toBe(2);

    const receivers = await receiversFor(bridge.offer);
    await bridge.connect({ ip: '127.0.0.1', ports: receivers.map((receiver) => receiver.port) });
    await waitFor(
      () => receivers.every((receiver) => receiver.rtp.length >= 20),
      5000,
      'SRTP on both ports',
    );
    const [video, audio] = receivers;
    // RTP headers stay clear in SRTP.
    for (const [index, receiver] of receivers.entries()) {
      expect(new Set(receiver.rtp.map((packet) => packet.readUInt32BE(8)))).toEqual(
        new Set([streams[index]!.ssrc]),
      );
    }
    expect(video!.rtp.filter(isClearVp8).length).toBeLessThan(video!.rtp.length / 10);
    expect(audio!.rtp.some(isClearOpus)).toBe(false);
    // The offered key authenticates every packet and decrypts the sharer's payloads.
    for (const [index, receiver] of receivers.entries()) {
      const context = new SrtpContext(keys[index]!);
      const clear = receiver.rtp.map((packet) => context.unprotectRtp(packet));
      const isClear = index === 0 ? isClearVp8 : isClearOpus;
      expect(clear.every((packet) => packet !== undefined)).toBe(true);
      expect(clear.every((packet) => packet !== undefined && isClear(packet))).toBe(true);
    }
    // The key of one stream does not fit the other.
    expect(new SrtpContext(keys[0]!).unprotectRtp(audio!.rtp[0]!)).toBeUndefined();
  });

  it('the share ending closes the bridge once, with its transports; close() after that does nothing', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, false);
    const transports = () => share.pool.loads()[0]!.transports;
    // The sharer's transport and the bridge's two.
    expect(transports()).toBe(3);
    const reasons: ShareBridgeCloseReason[] = [];
    bridge.events.on('closed', (reason) => reasons.push(reason));

    share.video.close();
    await waitFor(() => bridge.closed, 5000, 'the bridge to close');
    expect(reasons).toEqual(['producer-closed']);
    expect(transports()).toBe(1);
    bridge.close();
    share.audio.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reasons).toEqual(['producer-closed']);
    await expect(
      bridge.connect({ ip: '127.0.0.1', ports: [40_000, 40_002] }),
    ).rejects.toMatchObject({ code: 'unavailable', message: 'the bridge closed' });
    await expect(bridge.stats()).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('closing the router closes the bridge with "router-closed"', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, false);
    const reasons: ShareBridgeCloseReason[] = [];
    bridge.events.on('closed', (reason) => reasons.push(reason));
    share.router.close();
    expect(reasons).toEqual(['router-closed']);
    expect(bridge.closed).toBe(true);
  });

  it('bridge.connect() refuses an answer whose ports do not match the streams, and the bridge stays usable', async () => {
    const share = await startShare();
    const bridge = await openBridge(share, false);
    await expect(bridge.connect({ ip: '127.0.0.1', ports: [40_000] })).rejects.toMatchObject({
      code: 'bad_request',
      message: 'the answer has 1 ports for 2 streams',
    });
    await expect(bridge.connect({ ip: '127.0.0.1', ports: [40_001, 1] })).rejects.toMatchObject({
      code: 'bad_request',
    });
    const receivers = await receiversFor(bridge.offer);
    await bridge.connect({ ip: '127.0.0.1', ports: receivers.map((receiver) => receiver.port) });
    await waitFor(() => receivers[0]!.rtp.length > 0, 5000, 'RTP after a good answer');
    await expect(
      bridge.connect({ ip: '127.0.0.1', ports: receivers.map((receiver) => receiver.port) }),
    ).rejects.toMatchObject({ code: 'conflict' });
  });
});

describe('share bridges of a channel', () => {
  let node: VoiceNode | undefined;

  afterEach(() => {
    node?.close();
    node = undefined;
  });

  async function startNode(overrides: Parameters<typeof voiceConfig>[0] = {}) {
    node = await VoiceNode.start(
      voiceConfig({ numWorkers: 1, rtcBasePort: 0, ...overrides }),
      quietLogger,
    );
    return node;
  }

  /** Joins a participant who may share, with a plain send transport. */
  async function joinSharer(voice: VoiceNode, name: string) {
    const sink = new RecordingSink();
    const { channel, peer } = await voice.channels.join(
      'room',
      testIdentity(name, ['join', 'speak', 'screen-share']),
      voice.routerRtpCapabilities,
      sink,
      { autoResume: true },
    );
    const transport = await channel.createPlainTransport(peer.id, 'send');
    const produce = (
      source: 'screen' | 'screen-audio' | 'microphone',
      ssrc: number,
      capture?: ShareCapture,
    ) =>
      channel.produce(peer.id, {
        transportId: transport.id,
        kind: source === 'screen' ? 'video' : 'audio',
        rtpParameters:
          source === 'screen'
            ? vp8SimulcastRtpParameters([
                { ssrc, maxBitrate: 500_000 },
                { ssrc: ssrc + 1, maxBitrate: 2_000_000 },
              ])
            : opusProducerRtpParameters(ssrc),
        source,
        capture,
      });
    return { channel, peer, sink, produce };
  }

  const transports = (voice: VoiceNode) => voice.pool.loads()[0]!.transports;

  it('channel.openBridge() of a participant who shares no screen fails with not_found', async () => {
    const voice = await startNode();
    const sam = await joinSharer(voice, 'Sam');
    await sam.produce('microphone', 6001);
    await expect(sam.channel.openBridge(sam.peer.id, { srtp: false })).rejects.toMatchObject({
      code: 'not_found',
      message: `participant ${sam.peer.id} shares no screen`,
    });
    await expect(sam.channel.openBridge('nobody', { srtp: false })).rejects.toMatchObject({
      code: 'not_found',
      message: 'participant nobody shares no screen',
    });
    // Nothing was left open: the sharer's transport only.
    expect(transports(voice)).toBe(1);
  });

  it('a bridge sends the share audio and the microphone, each ending leaves it on (the ingest node fills it with silence), and the video ending closes it', async () => {
    const voice = await startNode();
    const sue = await joinSharer(voice, 'Sue');
    await sue.produce('screen', 6101);
    const microphone = await sue.produce('microphone', 6110);
    const shareAudio = await sue.produce('screen-audio', 6120);
    const bridgeClosed: ChannelEvents['bridgeClosed'][] = [];
    sue.channel.events.on('bridgeClosed', (...event) => bridgeClosed.push(event));
    const before = transports(voice);

    const bridge = await sue.channel.openBridge(sue.peer.id, { srtp: false });
    // Nothing said of the capture: the ingest node plans for the channel's cap.
    expect(bridge.offer.capture).toBeUndefined();
    expect(bridge.offer.streams.map((stream) => stream.role)).toEqual([
      'video',
      'audio',
      'microphone',
    ]);
    expect(transports(voice)).toBe(before + 3);
    microphone.close();
    shareAudio.close();
    await waitFor(() => transports(voice) === before + 1, 5000, 'the audio transports to close');
    expect(bridgeClosed).toEqual([]);

    sue.channel.stopShare(sue.peer.id, sue.peer.id);
    await waitFor(() => bridgeClosed.length > 0, 5000, 'the bridge to close');
    expect(bridgeClosed).toEqual([[bridge.bridgeId, 'producer-closed']]);
    expect(transports(voice)).toBe(before);
  });

  it('the capture size a sharer reports travels in the bridge offer, for the ingest node to plan its ladder under', async () => {
    const voice = await startNode();
    const sue = await joinSharer(voice, 'Sue');
    const capture = { width: 1280, height: 720, fps: 30 };
    await sue.produce('screen', 6101, capture);
    const bridge = await sue.channel.openBridge(sue.peer.id, { srtp: false });
    expect(bridge.offer.capture).toEqual(capture);
  });

  it('stopping the share closes its bridge once and its transports; closeBridge() is idempotent', async () => {
    const voice = await startNode();
    const sue = await joinSharer(voice, 'Sue');
    const screen = await sue.produce('screen', 6201);
    const bridgeClosed: ChannelEvents['bridgeClosed'][] = [];
    sue.channel.events.on('bridgeClosed', (...event) => bridgeClosed.push(event));

    const first = await sue.channel.openBridge(sue.peer.id, { srtp: true });
    // No audio: the video alone, on one transport.
    expect(first.offer.streams.map((stream) => stream.role)).toEqual(['video']);
    expect(transports(voice)).toBe(2);
    sue.channel.closeBridge(first.bridgeId);
    sue.channel.closeBridge(first.bridgeId);
    sue.channel.closeBridge('no-such-bridge');
    expect(bridgeClosed).toEqual([[first.bridgeId, 'closed']]);
    expect(transports(voice)).toBe(1);
    await expect(
      sue.channel.connectBridge(first.bridgeId, { ip: '127.0.0.1', ports: [40_000] }),
    ).rejects.toMatchObject({ code: 'not_found', message: `no bridge ${first.bridgeId}` });

    const second = await sue.channel.openBridge(sue.peer.id, { srtp: false });
    expect(transports(voice)).toBe(2);
    sue.channel.stopShare(sue.peer.id, sue.peer.id);
    expect(screen.closed).toBe(true);
    await waitFor(() => bridgeClosed.length > 1, 5000, 'the bridge to close with the share');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(bridgeClosed).toEqual([
      [first.bridgeId, 'closed'],
      [second.bridgeId, 'producer-closed'],
    ]);
    expect(transports(voice)).toBe(1);
    sue.channel.closeBridge(second.bridgeId);
    expect(bridgeClosed).toHaveLength(2);
  });

  it('closing the channel closes its open bridges before it reports itself closed', async () => {
    const voice = await startNode();
    const sue = await joinSharer(voice, 'Sue');
    await sue.produce('screen', 6301);
    await sue.produce('microphone', 6310);
    const bridges = [
      await sue.channel.openBridge(sue.peer.id, { srtp: false }),
      await sue.channel.openBridge(sue.peer.id, { srtp: true }),
    ];
    expect(transports(voice)).toBe(5);
    const events: string[] = [];
    sue.channel.events.on('bridgeClosed', (bridgeId, reason) =>
      events.push(`bridgeClosed ${bridgeId} ${reason}`),
    );
    sue.channel.events.on('closed', () => events.push('closed'));

    sue.channel.close('deleted');
    expect(events).toEqual([
      ...bridges.map(({ bridgeId }) => `bridgeClosed ${bridgeId} closed`),
      'closed',
    ]);
    expect(transports(voice)).toBe(0);
    await expect(sue.channel.openBridge(sue.peer.id, { srtp: false })).rejects.toMatchObject({
      code: 'unavailable',
    });
  });

  it('an open bridge keeps the top layer on at the sharer while nobody in the channel watches', async () => {
    const voice = await startNode({ shareLayerIdleMs: 200 });
    const sue = await joinSharer(voice, 'Sue');
    await sue.produce('screen', 6401);
    const told = () => sue.sink.of('shareLayers').map((notice) => notice.activeLayers);
    // Nobody watches: the top layer goes after the idle time.
    await waitFor(() => told().length === 1, 5000, 'the top layer to be switched off');
    expect(told()).toEqual([1]);
    const { bridgeId } = await sue.channel.openBridge(sue.peer.id, { srtp: false });
    expect(told()).toEqual([1, 2]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(told()).toEqual([1, 2]);
    sue.channel.closeBridge(bridgeId);
    await waitFor(() => told().length === 3, 5000, 'the top layer to go with the bridge');
    expect(told()).toEqual([1, 2, 1]);
  });
});
