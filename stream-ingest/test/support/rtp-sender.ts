import { spawn } from 'node:child_process';
import type { BridgeOffer } from '@hearth/protocol';

const VIDEO_SSRC = 1111;
const AUDIO_SSRC = 2222;
// ffmpeg sending RTP reads no feedback: what the receiver sends back goes to the discard port.
const DISCARD_PORT = 9;

/** The bridge offer that describes what `sendRtp` sends. */
export const SENT_OFFER: BridgeOffer = {
  streams: [
    {
      role: 'video',
      mimeType: 'video/VP8',
      payloadType: 101,
      clockRate: 90_000,
      ssrc: VIDEO_SSRC,
      rtcpPort: DISCARD_PORT,
    },
    {
      role: 'audio',
      mimeType: 'audio/opus',
      payloadType: 100,
      clockRate: 48_000,
      channels: 2,
      ssrc: AUDIO_SSRC,
      rtcpPort: DISCARD_PORT,
    },
  ],
};

/**
 * Sends VP8 (copied from a concat list, or encoded from lavfi) and Opus RTP to the ports, as the
 * voice node would; resolves when the sender exits. `cleanup` gets a step that kills it.
 */
export function sendRtp(
  ports: readonly number[],
  videoInput: string[],
  seconds: number,
  cleanup: Array<() => unknown>,
): Promise<unknown> {
  const sender = spawn(
    '/usr/bin/ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-re',
      ...['-t', String(seconds), ...videoInput],
      ...[
        '-re',
        '-t',
        String(seconds),
        '-f',
        'lavfi',
        '-i',
        'sine=frequency=440:sample_rate=48000',
      ],
      '-map',
      '0:v',
      ...(videoInput.includes('concat')
        ? ['-c:v', 'copy']
        : [
            '-c:v',
            'libvpx',
            '-deadline',
            'realtime',
            '-cpu-used',
            '8',
            '-b:v',
            '600k',
            '-g',
            '30',
          ]),
      '-ssrc',
      String(VIDEO_SSRC),
      '-payload_type',
      '101',
      '-f',
      'rtp',
      `rtp://127.0.0.1:${ports[0]}`,
      '-map',
      '1:a',
      '-c:a',
      'libopus',
      '-ac',
      '2',
      '-ssrc',
      String(AUDIO_SSRC),
      '-payload_type',
      '100',
      '-f',
      'rtp',
      `rtp://127.0.0.1:${ports[1]}`,
    ],
    { stdio: 'ignore' },
  );
  cleanup.push(() => sender.kill('SIGKILL'));
  return new Promise((resolve) => sender.once('exit', resolve));
}
