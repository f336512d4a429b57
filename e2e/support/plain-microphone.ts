import { spawn } from 'node:child_process';
import type { TestApi } from '../../api/test/support/server';
import { opusProducerRtpParameters, OPUS_PAYLOAD_TYPE } from '../../voice-sfu/test/support/rtp';

const MICROPHONE_SSRC = 7201;

/**
 * Has a peer on the api's voice node speak for `seconds`: a 440 Hz tone encoded as Opus by ffmpeg
 * (real Opus, so a browser decodes and plays it), sent over a plain transport that learns the
 * sender's address (comedia). Its stop joins `cleanup`.
 */
export async function speakPlainTone(
  api: TestApi,
  channel: string,
  peerId: string,
  cleanup: Array<() => unknown>,
  seconds: number,
): Promise<void> {
  const voiceChannel = api.voice?.channels.get(channel);
  if (!voiceChannel) throw new Error(`channel ${channel} is not open on the api's voice node`);
  const transport = await voiceChannel.createPlainTransport(peerId, 'send');
  const producer = await voiceChannel.produce(peerId, {
    transportId: transport.id,
    kind: 'audio',
    source: 'microphone',
    rtpParameters: opusProducerRtpParameters(MICROPHONE_SSRC),
  });
  const port = transport.tuple.localPort;
  const sender = spawn(
    '/usr/bin/ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi'],
      ...['-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds)],
      ...['-c:a', 'libopus', '-b:a', '32k', '-ac', '2', '-application', 'voip'],
      ...['-ssrc', String(MICROPHONE_SSRC), '-payload_type', String(OPUS_PAYLOAD_TYPE)],
      // RTP only: ffmpeg's RTCP comes from another port, which the comedia transport would take
      // for the sender's address.
      ...['-f', 'rtp', `rtp://127.0.0.1:${port}?rtcpport=${port + 1}`],
    ],
    { stdio: 'ignore' },
  );
  cleanup.push(() => {
    sender.kill('SIGKILL');
    producer.close();
  });
}
