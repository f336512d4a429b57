import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UdpImpairmentRelay } from './support/impairment';
import { waitFor } from '../voice-sfu/test/support/plain-peers';
import {
  bindUdp,
  buildOpusPacket,
  nowMicros,
  opusProducerRtpParameters,
  RtpReceiver,
} from '../voice-sfu/test/support/rtp';

const SSRC = 0x1234_5678;
const PACKETS = 300;
// mediasoup 3.12 starts a stream's highest sequence number at the first one minus one, so a
// stream starting at 0 would count a spurious wrap-around as 65,536 lost packets.
const FIRST_SEQUENCE = 1000;

/** An RTCP sender report for `SSRC`: mediasoup scores a producer's stream when one arrives. */
function senderReport(packetsSent: number): Buffer {
  const report = Buffer.alloc(28);
  report[0] = 0x80; // Version 2, no report blocks.
  report[1] = 200; // SR.
  report.writeUInt16BE(6, 2); // Length in 32-bit words minus one.
  report.writeUInt32BE(SSRC, 4);
  const ntpSeconds = Math.floor(Date.now() / 1000) + 2_208_988_800;
  report.writeUInt32BE(ntpSeconds >>> 0, 8);
  report.writeUInt32BE((packetsSent * 960) >>> 0, 16);
  report.writeUInt32BE(packetsSent, 20);
  return report;
}

let worker: types.Worker;

beforeAll(async () => {
  worker = await mediasoup.createWorker({ logLevel: 'error' });
});

afterAll(() => worker?.close());

describe('UdpImpairmentRelay in front of a mediasoup PlainTransport', () => {
  it('20 % upstream loss shows in the consumer stats as packets lost and a lower score', async () => {
    const router = await worker.createRouter({
      mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }],
    });
    const sendTransport = await router.createPlainTransport({
      listenIp: '127.0.0.1',
      rtcpMux: true,
      comedia: true,
    });
    const producer = await sendTransport.produce({
      kind: 'audio',
      rtpParameters: opusProducerRtpParameters(SSRC),
    });
    const receiver = new RtpReceiver(await bindUdp());
    const recvTransport = await router.createPlainTransport({
      listenIp: '127.0.0.1',
      rtcpMux: true,
    });
    await recvTransport.connect({ ip: '127.0.0.1', port: receiver.port });
    const consumer = await recvTransport.consume({
      producerId: producer.id,
      rtpCapabilities: router.rtpCapabilities,
    });
    const relay = await UdpImpairmentRelay.start({
      target: { host: '127.0.0.1', port: sendTransport.tuple.localPort },
      seed: 11,
      impairment: { upstream: { lossPercent: 20 } },
    });
    const sender = await bindUdp();
    try {
      for (let sequence = 0; sequence < PACKETS; sequence++) {
        const packet = buildOpusPacket({
          ssrc: SSRC,
          sequence: FIRST_SEQUENCE + sequence,
          levelDbov: 20,
          sentAtMicros: nowMicros(),
        });
        sender.send(packet, relay.port);
        if (sequence % 25 === 24) sender.send(senderReport(sequence + 1), relay.port);
        await new Promise((resolve) => setTimeout(resolve, 4));
      }
      const upstream = () => relay.stats().upstream;
      await waitFor(() => upstream().packetsIn === PACKETS + PACKETS / 25, 5000, 'the relay');
      // Everything mediasoup took in has reached the receiver.
      await waitFor(
        async () => receiver.total === (await producer.getStats())[0]?.packetCount,
        5000,
        'the receiver',
      );
      const lostOnTheWay = PACKETS - receiver.total;
      expect(lostOnTheWay / PACKETS).toBeGreaterThan(0.12);
      expect(lostOnTheWay / PACKETS).toBeLessThan(0.28);
      expect(lostOnTheWay).toBeLessThanOrEqual(upstream().dropped.random);
      // mediasoup updates packetsLost when it builds a receiver report for an audio producer, at
      // most every 5 s, and counts gaps in sequence numbers, so losses after the last packet
      // received are not in it.
      const packetsLost = async () =>
        (await consumer.getStats()).find((entry) => entry.type === 'inbound-rtp')?.packetsLost ?? 0;
      await waitFor(
        async () => (await packetsLost()) >= lostOnTheWay - 10,
        10_000,
        'packetsLost in the consumer stats',
      );
      expect(await packetsLost()).toBeLessThanOrEqual(lostOnTheWay);
      await waitFor(() => consumer.score.producerScore < 10, 5000, 'the producer score to drop');
      expect(consumer.score.producerScore).toBeLessThan(10);
    } finally {
      sender.close();
      receiver.close();
      await relay.close();
      router.close();
    }
  });
});
