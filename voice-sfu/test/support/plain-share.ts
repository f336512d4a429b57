import { voiceConfig } from '../../src/config';
import { routerMediaCodecs } from '../../src/media-codecs';
import { WorkerPool } from '../../src/worker-pool';
import { quietLogger, waitFor } from './plain-peers';
import { RtpSender, bindUdp, opusProducerRtpParameters, vp8SimulcastRtpParameters } from './rtp';
import { Vp8ShareSender } from './vp8';

/** Three layers far enough apart in bitrate that packet counts tell which one arrives. */
export const SHARE_LAYERS = [
  { ssrc: 3001, bitrate: 150_000 },
  { ssrc: 3002, bitrate: 500_000 },
  { ssrc: 3003, bitrate: 2_000_000 },
];
/** The SSRC of the sharer's microphone. */
export const MICROPHONE_SSRC = 3100;

/** A share `startPlainShare` runs. */
export type PlainShare = Awaited<ReturnType<typeof startPlainShare>>;

/**
 * A share on a router of its own: a VP8 simulcast producer and an Opus microphone fed by a
 * plain sender (comedia), both sending until `cleanups` run.
 */
export async function startPlainShare(cleanups: (() => void)[]) {
  const pool = await WorkerPool.create(voiceConfig({ numWorkers: 1, rtcBasePort: 0 }), quietLogger);
  cleanups.push(() => pool.close());
  const router = await pool.slot(0).worker.createRouter({ mediaCodecs: routerMediaCodecs });
  const source = await router.createPlainTransport({
    listenIp: '127.0.0.1',
    rtcpMux: true,
    comedia: true,
  });
  const video = await source.produce({
    kind: 'video',
    rtpParameters: vp8SimulcastRtpParameters(
      SHARE_LAYERS.map(({ ssrc, bitrate }) => ({ ssrc, maxBitrate: bitrate })),
    ),
  });
  const audio = await source.produce({
    kind: 'audio',
    rtpParameters: opusProducerRtpParameters(MICROPHONE_SSRC),
  });
  const socket = await bindUdp();
  const vp8 = new Vp8ShareSender(socket, source, SHARE_LAYERS);
  const opus = new RtpSender(socket, MICROPHONE_SSRC, source);
  void vp8.start();
  const microphone = setInterval(() => opus.sendOne(), 20);
  cleanups.push(() => {
    clearInterval(microphone);
    vp8.close();
  });
  await waitFor(
    async () => (await video.getStats()).length === SHARE_LAYERS.length,
    5000,
    'every layer of the share to reach its producer',
  );
  return { pool, router, video, audio, vp8 };
}
