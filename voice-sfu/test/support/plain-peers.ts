import type { types } from 'mediasoup';
import type { Grant, VoiceNotificationData, VoiceNotificationMethod } from '@hearth/protocol';
import { createLogger, type Identity } from '@hearth/server-common';
import type { Channel } from '../../src/channel';
import type { PeerSink } from '../../src/peer';
import type { VoiceNode } from '../../src/voice-node';
import { bindUdp, opusProducerRtpParameters, RtpReceiver, RtpSender } from './rtp';

/** A logger that drops everything below errors, for tests. */
export const quietLogger = createLogger('test', { level: 'error' });

/** A notification a test peer received. */
export interface ReceivedNotification {
  /** Notification name. */
  method: VoiceNotificationMethod;
  /** Its data. */
  data: unknown;
}

/** A PeerSink that records notifications for assertions. */
export class RecordingSink implements PeerSink {
  /** Every notification, in order. */
  readonly received: ReceivedNotification[] = [];

  notify<M extends VoiceNotificationMethod>(method: M, data: VoiceNotificationData<M>): void {
    this.received.push({ method, data });
  }

  /** Data of every notification of one kind. */
  of<M extends VoiceNotificationMethod>(method: M): VoiceNotificationData<M>[] {
    return this.received
      .filter((entry) => entry.method === method)
      .map((entry) => entry.data as VoiceNotificationData<M>);
  }
}

/**
 * An identity for tests: a guest, ranked by its grants (a moderator with the default ones, since
 * `moderate` is among them), unless `extra` says otherwise.
 */
export function testIdentity(
  displayName: string,
  grants: Grant[] = ['join', 'speak', 'moderate'],
  extra: Partial<
    Pick<Identity, 'guest' | 'rank' | 'serverMuted' | 'tokenId' | 'spectator' | 'maxSharePreset'>
  > = {},
): Identity {
  return {
    userId: `test:${displayName}`,
    displayName,
    guest: true,
    grants: new Set(grants),
    ...extra,
  };
}

/** A test peer that sends Opus RTP through a PlainTransport on the channel's core. */
export interface PlainSpeaker {
  channel: Channel;
  peerId: string;
  sink: RecordingSink;
  producer: types.Producer;
  transport: types.PlainTransport;
  sender: RtpSender;
}

/**
 * Joins a peer that produces audio from a local UDP sender: an ordinary member (join and speak),
 * so the listeners, who hold moderate, outrank it and may server-mute it.
 */
export async function joinPlainSpeaker(
  node: VoiceNode,
  channelName: string,
  name: string,
  ssrc: number,
): Promise<PlainSpeaker> {
  const sink = new RecordingSink();
  const { channel, peer } = await node.channels.join(
    channelName,
    testIdentity(name, ['join', 'speak']),
    node.routerRtpCapabilities,
    sink,
    { autoResume: true },
  );
  const transport = await channel.createPlainTransport(peer.id, 'send');
  const producer = await channel.produce(peer.id, {
    transportId: transport.id,
    kind: 'audio',
    rtpParameters: opusProducerRtpParameters(ssrc),
  });
  const sender = new RtpSender(await bindUdp(), ssrc, transport);
  return { channel, peerId: peer.id, sink, producer, transport, sender };
}

/** A test peer that receives every producer through a PlainTransport on an edge. */
export interface PlainListener {
  channel: Channel;
  peerId: string;
  sink: RecordingSink;
  transport: types.PlainTransport;
  receiver: RtpReceiver;
}

/**
 * Joins a peer that receives on a local UDP socket, optionally with SRTP: a moderator, unless
 * `identity` says who it is.
 */
export async function joinPlainListener(
  node: VoiceNode,
  channelName: string,
  name: string,
  options: { srtp?: types.SrtpCryptoSuite; measureDelay?: boolean; identity?: Identity } = {},
): Promise<PlainListener> {
  const sink = new RecordingSink();
  const { channel, peer } = await node.channels.join(
    channelName,
    options.identity ?? testIdentity(name),
    node.routerRtpCapabilities,
    sink,
    { autoResume: true },
  );
  const receiver = new RtpReceiver(await bindUdp(), { measureDelay: options.measureDelay });
  const transport = await channel.createPlainTransport(peer.id, 'recv', options.srtp);
  await transport.connect({
    ip: '127.0.0.1',
    port: receiver.port,
    srtpParameters: options.srtp
      ? { cryptoSuite: options.srtp, keyBase64: transport.srtpParameters!.keyBase64 }
      : undefined,
  });
  return { channel, peerId: peer.id, sink, transport, receiver };
}

/** Waits until a condition holds, polling every 20 ms, or fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
