import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeOffer } from '@hearth/protocol';
import { rtpHeaderBytes } from '@hearth/server-common';
import { BridgeReceiver } from '../stream-ingest/src/bridge-receiver';
import { ShareBridge } from '../voice-sfu/src/share-bridge';
import { quietLogger, waitFor } from '../voice-sfu/test/support/plain-peers';
import { bindUdp, bindUdpPair } from '../voice-sfu/test/support/rtp';
import { startPlainShare, type PlainShare } from '../voice-sfu/test/support/plain-share';

// A real mediasoup share bridge (SRTP over PlainTransports) sending to the ingest node's bridge
// receiver, through a relay that loses packets on the way, and sockets standing for ffmpeg.

const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/**
 * A UDP relay for one bridge stream between the voice node and the receiver: RTP one way, RTCP
 * both ways, so that each side sees the relay's ports as its peer's. `drop` decides, for each
 * RTP packet on its way to the receiver, whether it is lost.
 */
class LossyRelay {
  drop: (packet: Buffer) => boolean = () => false;
  dropped = 0;
  readonly #voiceSide: [dgram.Socket, dgram.Socket];
  readonly #receiverSide: [dgram.Socket, dgram.Socket];

  private constructor(
    voiceSide: [dgram.Socket, dgram.Socket],
    receiverSide: [dgram.Socket, dgram.Socket],
  ) {
    this.#voiceSide = voiceSide;
    this.#receiverSide = receiverSide;
  }

  static async open(): Promise<LossyRelay> {
    const relay = new LossyRelay(await bindUdpPair(), [await bindUdp(), await bindUdp()]);
    cleanups.push(() => relay.close());
    return relay;
  }

  /** Where the voice node sends RTP (its RTCP to the next port). */
  get voicePort(): number {
    return this.#voiceSide[0].address().port;
  }

  /** Where the receiver sends its RTCP: the relay passes it on to the voice node. */
  get receiverRtcpPort(): number {
    return this.#receiverSide[1].address().port;
  }

  /** Starts relaying between the voice node's RTCP port and the receiver's RTP port. */
  connect(voiceRtcpPort: number, receiverPort: number): void {
    const [voiceRtp, voiceRtcp] = this.#voiceSide;
    const [receiverRtp, receiverRtcp] = this.#receiverSide;
    voiceRtp.on('message', (packet) => {
      if (this.drop(packet)) {
        this.dropped += 1;
        return;
      }
      receiverRtp.send(packet, receiverPort, '127.0.0.1');
    });
    voiceRtcp.on('message', (packet) => receiverRtcp.send(packet, receiverPort + 1, '127.0.0.1'));
    receiverRtcp.on('message', (packet) => voiceRtcp.send(packet, voiceRtcpPort, '127.0.0.1'));
  }

  close(): void {
    for (const socket of [...this.#voiceSide, ...this.#receiverSide]) socket.close();
  }
}

/** Stands for ffmpeg on one stream: records the clear RTP the receiver passes on. */
class FfmpegStandIn {
  readonly packets: Buffer[] = [];

  private constructor(socket: dgram.Socket) {
    socket.on('message', (packet) => this.packets.push(packet));
  }

  static async bind(port: number): Promise<FfmpegStandIn> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, '127.0.0.1', () => resolve());
    });
    const standIn = new FfmpegStandIn(socket);
    cleanups.push(() => socket.close());
    return standIn;
  }

  /** Sequence numbers received, extended across wraps, in arrival order. */
  sequences(): number[] {
    let highest: number | undefined;
    return this.packets.map((packet) => {
      const sequence = packet.readUInt16BE(2);
      if (highest === undefined) {
        highest = sequence;
        return sequence;
      }
      const delta = (sequence - (highest & 0xffff) + 0x1_0000) % 0x1_0000;
      const extended = delta < 0x8000 ? highest + delta : highest + delta - 0x1_0000;
      highest = Math.max(highest, extended);
      return extended;
    });
  }
}

/** A share, its SRTP bridge, a relay per stream, the receiver, and ffmpeg's stand-ins. */
async function bridgeThroughRelay(share: PlainShare) {
  const bridge = await ShareBridge.open({
    router: share.router,
    video: share.video,
    audio: share.audio,
    listenIp: '127.0.0.1',
    srtp: true,
    logger: quietLogger,
  });
  cleanups.push(() => bridge.close());
  const relays = [await LossyRelay.open(), await LossyRelay.open()];
  // The receiver answers whoever the offer names: here the relay, which passes it on.
  const offer: BridgeOffer = {
    streams: bridge.offer.streams.map((stream, index) => ({
      ...stream,
      rtcpPort: relays[index]!.receiverRtcpPort,
    })),
  };
  const receiver = await BridgeReceiver.open({
    offer,
    host: '127.0.0.1',
    sourceAddress: '127.0.0.1',
    logger: quietLogger,
  });
  cleanups.push(() => receiver.close());
  const feedPorts = [...receiver.feed.sdp.matchAll(/^m=\w+ (\d+) /gm)].map((match) =>
    Number(match[1]),
  );
  const [video, audio] = await Promise.all(feedPorts.map((port) => FfmpegStandIn.bind(port)));
  relays.forEach((relay, index) =>
    relay.connect(bridge.offer.streams[index]!.rtcpPort, receiver.answer.ports[index]!),
  );
  await bridge.connect({ ip: '127.0.0.1', ports: relays.map((relay) => relay.voicePort) });
  return { bridge, relays, receiver, video: video!, audio: audio! };
}

// What the share's VP8 sender puts first in every payload: a descriptor with I, L and T present.
function isClearVp8(packet: Buffer): boolean {
  const payload = packet.subarray(rtpHeaderBytes(packet) ?? packet.length);
  return (payload[0]! & 0x80) !== 0 && payload[1] === 0xe0;
}

function isSilence(packet: Buffer): boolean {
  return packet.subarray(rtpHeaderBytes(packet) ?? packet.length).equals(OPUS_SILENCE);
}

describe('the bridge receiver in front of ffmpeg', () => {
  it('passes the SRTP of a mediasoup bridge on in the clear, and NACKs bring back every packet the relay lost', async () => {
    const share = await startPlainShare(cleanups);
    const { bridge, relays, receiver, video } = await bridgeThroughRelay(share);
    // One first transmission in 25 is lost; retransmissions get through.
    const seen = new Set<number>();
    relays[0]!.drop = (packet) => {
      const sequence = packet.readUInt16BE(2);
      const first = !seen.has(sequence);
      seen.add(sequence);
      return first && sequence % 25 === 0;
    };
    await waitFor(() => relays[0]!.dropped >= 20, 15_000, '20 video packets lost');
    relays[0]!.drop = () => false;
    // Past the longest a lost packet is asked for.
    await new Promise((resolve) => setTimeout(resolve, 400));

    const sequences = video.sequences();
    const first = Math.min(...sequences);
    const last = Math.max(...sequences);
    const missing = [];
    for (let sequence = first; sequence <= last; sequence++) {
      if (!sequences.includes(sequence)) missing.push(sequence);
    }
    expect(missing).toEqual([]);
    expect(video.packets.every(isClearVp8)).toBe(true);
    const [counters] = receiver.counters;
    expect(counters).toMatchObject({ role: 'video', lost: 0 });
    expect(counters!.recovered).toBeGreaterThanOrEqual(relays[0]!.dropped);
    // mediasoup authenticated the SRTCP NACKs: it counts them and resent the packets.
    const [stats] = await bridge.stats();
    expect(stats!.nackCount).toBeGreaterThan(0);
  });

  it('loss NACKs cannot repair is given up on: the sharer is asked for a key frame, and receiver reports tell mediasoup what was lost', async () => {
    const share = await startPlainShare(cleanups);
    const { bridge, relays, receiver, video } = await bridgeThroughRelay(share);
    await waitFor(() => video.packets.length > 50, 5000, 'video through the receiver');
    const keyFrames = share.vp8.sent.at(-1)!.keyFrames;
    // Every copy of one packet in 50 is lost, retransmissions included.
    relays[0]!.drop = (packet) => packet.readUInt16BE(2) % 50 === 0;
    await waitFor(() => receiver.counters[0]!.lost >= 3, 10_000, 'packets given up on');
    await waitFor(
      () => share.vp8.sent.at(-1)!.keyFrames > keyFrames,
      5000,
      'a key frame from the sharer',
    );
    await waitFor(
      async () => (await bridge.stats())[0]!.packetsLost > 0,
      5000,
      'the loss in a receiver report',
    );
    expect(receiver.counters[0]!.keyFrameRequests).toBeGreaterThanOrEqual(1);
    expect((await bridge.stats())[0]!.pliCount).toBeGreaterThanOrEqual(1);
  });

  it('asks the sharer for a key frame when ffmpeg says it cannot decode, in SRTCP mediasoup accepts', async () => {
    const share = await startPlainShare(cleanups);
    const { bridge, receiver, video } = await bridgeThroughRelay(share);
    await waitFor(() => video.packets.length > 50, 5000, 'video through the receiver');
    const keyFrames = share.vp8.sent.at(-1)!.keyFrames;
    const plis = (await bridge.stats())[0]!.pliCount;
    receiver.requestKeyFrame('decode error');
    await waitFor(
      () => share.vp8.sent.at(-1)!.keyFrames > keyFrames,
      5000,
      'a key frame from the sharer',
    );
    expect((await bridge.stats())[0]!.pliCount).toBe(plis + 1);
    // A second request right after is held back: the key frame is on its way.
    const requests = receiver.counters[0]!.keyFrameRequests;
    receiver.requestKeyFrame('decode error');
    expect(receiver.counters[0]!.keyFrameRequests).toBe(requests);
  });

  it('fills a muted microphone with Opus silence, so the audio ffmpeg reads never stops, and real audio continues after it', async () => {
    const share = await startPlainShare(cleanups);
    const { bridge, receiver, audio } = await bridgeThroughRelay(share);
    await waitFor(() => audio.packets.length >= 25, 5000, 'microphone audio');
    await share.audio.pause();
    await new Promise((resolve) => setTimeout(resolve, 600));
    await share.audio.resume();
    const before = audio.packets.length;
    await waitFor(
      () => audio.packets.slice(before).filter((packet) => !isSilence(packet)).length >= 10,
      5000,
      'real audio after the silence',
    );

    const silent = audio.packets.filter(isSilence).length;
    expect(silent).toBeGreaterThanOrEqual(20);
    expect(receiver.counters[1]!.silencePackets).toBe(silent);
    // One timeline: every packet follows the one before it by one sequence number and 20 ms.
    const sequences = audio.sequences();
    for (let i = 1; i < audio.packets.length; i++) {
      expect(sequences[i]! - sequences[i - 1]!).toBe(1);
      expect(
        (audio.packets[i]!.readUInt32BE(4) - audio.packets[i - 1]!.readUInt32BE(4)) >>> 0,
      ).toBe(960);
    }
    const { ssrc } = bridge.offer.streams[1]!;
    expect(new Set(audio.packets.map((packet) => packet.readUInt32BE(8)))).toEqual(new Set([ssrc]));
  });

  it('hostile datagrams on its ports, from the voice node’s own address, are dropped and counted, and the stream goes on', async () => {
    const share = await startPlainShare(cleanups);
    const { bridge, receiver, video } = await bridgeThroughRelay(share);
    await waitFor(() => video.packets.length > 50, 5000, 'video through the receiver');
    const attacker = await bindUdp();
    cleanups.push(() => attacker.close());
    const [videoPort] = receiver.answer.ports;
    const { ssrc, payloadType } = bridge.offer.streams[0]!;
    const header = (sequence: number) => {
      const packet = Buffer.alloc(12);
      packet[0] = 0x80;
      packet[1] = payloadType;
      packet.writeUInt16BE(sequence & 0xffff, 2);
      packet.writeUInt32BE(ssrc, 8);
      return packet;
    };
    const random = (bytes: number) => crypto.getRandomValues(Buffer.alloc(bytes));
    let sent = 0;
    for (let round = 0; round < 2000; round++) {
      const fuzz = [
        // Random bytes of any length, oversize included.
        random(Math.floor(Math.random() * 2000)),
        // The stream's own SSRC and payload type, with a forged body: fails authentication.
        Buffer.concat([header(Math.floor(Math.random() * 0x1_0000)), random(200)]),
        // A header that claims more CSRCs and extension words than the packet holds.
        Buffer.from([0x9f, payloadType, 0, 1, 0, 0, 0, 0, ...Buffer.alloc(4).fill(0xff)]),
      ];
      for (const datagram of fuzz) {
        for (const port of [videoPort!, videoPort! + 1]) {
          attacker.send(datagram, port, '127.0.0.1');
          sent += 1;
        }
      }
      if (round % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const passed = video.packets.length;
    await waitFor(() => video.packets.length > passed + 100, 5000, 'the stream to go on');
    // The datagrams on the RTP port were refused (a few may have overflowed the socket's
    // buffer before it was read); none reached ffmpeg.
    expect(receiver.counters[0]!.rejected).toBeGreaterThanOrEqual(0.9 * (sent / 2));
    expect(video.packets.every(isClearVp8)).toBe(true);
    expect(new Set(video.packets.map((packet) => packet.readUInt32BE(8)))).toEqual(new Set([ssrc]));
  });
});
