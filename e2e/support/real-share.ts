import { spawn, type ChildProcess } from 'node:child_process';
import type { ShareCapture } from '@hearth/protocol';
import type { TestApi } from '../../api/test/support/server';

const SHARE_SSRC = 7001;
/** The payload type the plain shares send VP8 with. */
export const VP8_PAYLOAD_TYPE = 101;

/** libvpx settings of the share: 1 Mbit/s, a key frame every 60 frames (2 s at 30 fps). */
export const SHARE_ENCODING: readonly string[] = [
  ...['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8'],
  ...['-b:v', '1M', '-g', '60'],
];

/** A running real-VP8 screen share. */
export interface RealShare {
  /** The ffmpeg process sending the share. */
  readonly sender: ChildProcess;
  /** Stops the sender and closes the share's producer. */
  stop(): void;
}

/** Shares a real 1280x720 VP8 screen (ffmpeg, one layer) for a peer; its `stop` joins `cleanup`. */
export async function shareRealVp8(
  api: TestApi,
  channel: string,
  peerId: string,
  cleanup: Array<() => unknown>,
  options: {
    /** How long the share runs, in seconds (60 by default). */
    seconds?: number;
    /** A VP8 file (IVF) to send as it is, looped, instead of encoding a test pattern live. */
    source?: string;
    /** The capture size the sharer reports, as a browser's share does; none by default. */
    capture?: ShareCapture;
  } = {},
): Promise<RealShare> {
  const { transport, producer } = await producePlainScreen(
    api,
    channel,
    peerId,
    [{ ssrc: SHARE_SSRC, maxBitrate: 1_500_000 }],
    options.capture,
  );
  // Real VP8, as a browser's encoder would feed mediasoup, so the HLS ladder has something to
  // decode. Encoding it live takes most of a core; a file sent as it is costs almost nothing.
  const seconds = String(options.seconds ?? 60);
  const input = options.source
    ? ['-stream_loop', '-1', '-i', options.source, '-t', seconds, '-c:v', 'copy']
    : ['-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', seconds, ...SHARE_ENCODING];
  const port = transport.tuple.localPort;
  const sender = spawn(
    '/usr/bin/ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-re'],
      ...input,
      ...['-ssrc', String(SHARE_SSRC), '-payload_type', String(VP8_PAYLOAD_TYPE), '-f', 'rtp'],
      // RTP only: ffmpeg sends its RTCP from another port, and the comedia transport would lock
      // onto whichever source comes first.
      `rtp://127.0.0.1:${port}?rtcpport=${port + 1}`,
    ],
    { stdio: 'ignore' },
  );
  const stop = () => {
    sender.kill('SIGKILL');
    producer.close();
  };
  cleanup.push(stop);
  return { sender, stop };
}

/**
 * A VP8 screen producer of a peer on the api's voice node, with these simulcast encodings, fed
 * through a plain transport that learns the sender's address (comedia).
 */
export async function producePlainScreen(
  api: TestApi,
  channel: string,
  peerId: string,
  encodings: { ssrc: number; maxBitrate: number }[],
  capture?: ShareCapture,
) {
  const voiceChannel = api.voice?.channels.get(channel);
  if (!voiceChannel) throw new Error(`channel ${channel} is not open on the api's voice node`);
  const transport = await voiceChannel.createPlainTransport(peerId, 'send');
  const producer = await voiceChannel.produce(peerId, {
    transportId: transport.id,
    kind: 'video',
    source: 'screen',
    capture,
    rtpParameters: {
      codecs: [
        {
          mimeType: 'video/VP8',
          payloadType: VP8_PAYLOAD_TYPE,
          clockRate: 90_000,
          rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }],
        },
      ],
      encodings,
    },
  });
  return { transport, producer };
}
