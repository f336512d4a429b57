import { describe, expect, it } from 'vitest';
import {
  buildFfmpegArgs,
  ffmpegRate,
  gopFrames,
  isNetworkInput,
  partPlanOf,
  toArgv,
  type FfmpegArgsOptions,
} from '../src/ffmpeg-args';
import { selectLadder } from '../src/ladder';

// The per-rung x264 options, spelled out once so the expected argv arrays stay readable; every
// value in them is still a literal of the test.
function x264(
  preset: string,
  level: string,
  kbps: number,
  maxKbps: number,
  gop: number,
  seg: string,
): string[] {
  // prettier-ignore
  return [
    '-c:v', 'libx264',
    '-preset:v', preset,
    '-tune:v', 'zerolatency',
    '-profile:v', 'high',
    '-level:v', level,
    '-b:v', `${kbps}k`,
    '-maxrate:v', `${maxKbps}k`,
    '-bufsize:v', `${maxKbps}k`,
    '-g:v', String(gop),
    '-keyint_min:v', String(gop),
    '-sc_threshold:v', '0',
    '-force_key_frames:v', `expr:gte(t,n_forced*${seg})`,
  ];
}

// A rung's audio and its fragmented MP4 output to pipe `fd`, fragments of `fragUs`.
function fmp4Output(kbps: number, fragUs: number, fd: number, audio = '0:a:0'): string[] {
  // prettier-ignore
  return [
    '-map', audio, '-c:a', 'aac', '-b:a', `${kbps}k`,
    '-ar', '48000',
    '-ac', '2',
    '-f', 'mp4',
    '-movflags', '+frag_keyframe+empty_moov+default_base_moof+skip_trailer',
    '-frag_duration', String(fragUs),
    '-flush_packets', '1',
    `pipe:${fd}`,
  ];
}

describe('buildFfmpegArgs() and toArgv()', () => {
  it('toArgv() for a 720p30 file input reads it at native rate and writes two rungs as fragmented MP4, one pipe each, parts of 6 frames', () => {
    const args = buildFfmpegArgs({
      inputUrl: '/media/in.flv',
      renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
      segmentSeconds: 2,
      preset: 'veryfast',
    });
    // prettier-ignore
    expect(toArgv(args)).toEqual([
      '-re',
      '-i', '/media/in.flv',
      '-loglevel', 'level+info',
      '-filter_complex',
      '[0:v:0]format=yuv420p,split=2[s0][s1];' +
        '[s0]fps=30,scale=1280:720,setsar=1[v0];' +
        '[s1]fps=30,scale=854:480,setsar=1[v1]',
      '-map', '[v0]', ...x264('veryfast', '3.1', 2000, 2200, 60, '2'),
      ...fmp4Output(128, 199_000, 3),
      '-map', '[v1]', ...x264('veryfast', '3.1', 1000, 1100, 60, '2'),
      ...fmp4Output(128, 199_000, 4),
    ]);
  });

  it('toArgv() for a 1080p60 RTMP input with passthrough copies the source and encodes four rungs', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1:1935/live/key',
      renditions: selectLadder({ width: 1920, height: 1080, fps: 60 }, { passthrough: true }),
      segmentSeconds: 2,
      preset: 'superfast',
    });
    // prettier-ignore
    expect(toArgv(args)).toEqual([
      '-rw_timeout', '10000000',
      '-i', 'rtmp://127.0.0.1:1935/live/key',
      '-loglevel', 'level+info',
      '-filter_complex',
      '[0:v:0]format=yuv420p,split=4[s0][s1][s2][s3];' +
        '[s0]fps=60,scale=1920:1080,setsar=1[v0];' +
        '[s1]fps=30,scale=1920:1080,setsar=1[v1];' +
        '[s2]fps=30,scale=1280:720,setsar=1[v2];' +
        '[s3]fps=30,scale=854:480,setsar=1[v3]',
      '-map', '0:v:0', '-c:v', 'copy', ...fmp4Output(160, 199_000, 3),
      '-map', '[v0]', ...x264('superfast', '4.2', 7000, 7700, 120, '2'),
      ...fmp4Output(160, 199_000, 4),
      '-map', '[v1]', ...x264('superfast', '4.0', 4000, 4400, 60, '2'),
      ...fmp4Output(160, 199_000, 5),
      '-map', '[v2]', ...x264('superfast', '3.1', 2000, 2200, 60, '2'),
      ...fmp4Output(128, 199_000, 6),
      '-map', '[v3]', ...x264('superfast', '3.1', 1000, 1100, 60, '2'),
      ...fmp4Output(128, 199_000, 7),
    ]);
  });

  it('toArgv() for 720p59.94 with 1.5 s segments uses NTSC fractions and rounds the GOP', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1/live/k',
      renditions: selectLadder({ width: 1280, height: 720, fps: 59.94 }),
      segmentSeconds: 1.5,
      preset: 'veryfast',
    });
    const argv = toArgv(args);
    expect(argv[argv.indexOf('-filter_complex') + 1]).toEqual(
      '[0:v:0]format=yuv420p,split=3[s0][s1][s2];' +
        '[s0]fps=60000/1001,scale=1280:720,setsar=1[v0];' +
        '[s1]fps=30000/1001,scale=1280:720,setsar=1[v1];' +
        '[s2]fps=30000/1001,scale=854:480,setsar=1[v2]',
    );
    const gops = argv.flatMap((arg, i) => (arg === '-g:v' ? [argv[i + 1]] : []));
    expect(gops).toEqual(['90', '45', '45']);
    expect(argv[argv.lastIndexOf('-force_key_frames:v') + 1]).toBe('expr:gte(t,n_forced*1.5)');
  });

  it('toArgv() for a passthrough-only ladder has no filter graph and no x264', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1/live/k',
      renditions: selectLadder(
        { width: 1280, height: 720, fps: 30 },
        { passthrough: true, maxRungs: 1 },
      ),
      segmentSeconds: 2,
      preset: 'veryfast',
    });
    // prettier-ignore
    expect(args.outputOptions).toEqual([
      '-loglevel', 'level+info',
      '-map', '0:v:0', '-c:v', 'copy',
      ...fmp4Output(128, 199_000, 3),
    ]);
    expect(args.outputOptions).not.toContain('-filter_complex');
    expect(args.outputOptions).not.toContain('libx264');
  });

  it('partPlanOf() gives parts of a whole number of frames near a fifth of a second, and a frame of slack (at least 25 ms) in PART-TARGET', () => {
    const [top] = selectLadder({ width: 1280, height: 720, fps: 30 });
    expect(partPlanOf(top!)).toEqual({ fragDurationUs: 199_000, partTargetSec: 0.234 });
    expect(partPlanOf({ ...top!, fps: 60 })).toEqual({
      fragDurationUs: 199_000,
      partTargetSec: 0.225,
    });
    expect(partPlanOf({ ...top!, fps: 25 })).toEqual({
      fragDurationUs: 199_000,
      partTargetSec: 0.24,
    });
    expect(partPlanOf({ ...top!, passthrough: true })).toEqual({
      fragDurationUs: 199_000,
      partTargetSec: 0.234,
    });
  });

  it('buildFfmpegArgs() for a bridge reads the SDP on stdin, letterboxes every rung and, without audio, encodes silence', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'pipe:0',
      renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
      segmentSeconds: 2,
      preset: 'veryfast',
      bridge: { localAddress: '127.0.0.1', audioStreams: 0 },
    });
    expect(args.inputOptions.slice(0, 6)).toEqual([
      '-protocol_whitelist',
      'pipe,rtp,udp',
      '-f',
      'sdp',
      '-localaddr',
      '127.0.0.1',
    ]);
    const graph = args.outputOptions[args.outputOptions.indexOf('-filter_complex') + 1];
    expect(graph?.split(';')).toEqual([
      '[0:v:0]format=yuv420p,split=2[s0][s1]',
      '[s0]fps=30,scale=1280:720:force_original_aspect_ratio=decrease:force_divisible_by=2,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1[v0]',
      '[s1]fps=30,scale=854:480:force_original_aspect_ratio=decrease:force_divisible_by=2,pad=854:480:(ow-iw)/2:(oh-ih)/2,setsar=1[v1]',
      'anullsrc=r=48000:cl=stereo,asplit=2[a0][a1]',
    ]);
    const audioMaps = args.outputOptions.filter(
      (option, i) => args.outputOptions[i - 1] === '-map' && option.startsWith('[a'),
    );
    expect(audioMaps).toEqual(['[a0]', '[a1]']);
    expect(() =>
      buildFfmpegArgs({
        inputUrl: 'pipe:0',
        renditions: selectLadder({ width: 1280, height: 720, fps: 30 }, { passthrough: true }),
        segmentSeconds: 2,
        preset: 'veryfast',
        bridge: { localAddress: '10.0.0.2', audioStreams: 1 },
      }),
    ).toThrow('a bridge is encoded on every rung: it has no H.264 to copy');
  });

  it('buildFfmpegArgs() for a bridge takes one audio stream as it is, and mixes two (the share and the microphone) into every rung', () => {
    const withAudio = (audioStreams: number) =>
      buildFfmpegArgs({
        inputUrl: 'pipe:0',
        renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
        segmentSeconds: 2,
        preset: 'veryfast',
        bridge: { localAddress: '127.0.0.1', audioStreams },
      }).outputOptions;
    const audioMaps = (options: string[]) =>
      options.filter((option, i) => options[i - 1] === '-map' && !option.startsWith('[v'));
    const graphOf = (options: string[]) =>
      options[options.indexOf('-filter_complex') + 1]!.split(';');

    expect(audioMaps(withAudio(1))).toEqual(['0:a:0', '0:a:0']);
    expect(graphOf(withAudio(1))).toHaveLength(3);
    const mixed = withAudio(2);
    expect(audioMaps(mixed)).toEqual(['[a0]', '[a1]']);
    expect(graphOf(mixed).at(-1)).toBe(
      '[0:a:0][0:a:1]amix=inputs=2:duration=longest:dropout_transition=0:normalize=0,alimiter=limit=0.95,asplit=2[a0][a1]',
    );
  });

  const valid: FfmpegArgsOptions = {
    inputUrl: 'rtmp://127.0.0.1/live/k',
    renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
    segmentSeconds: 2,
    preset: 'veryfast',
  };
  const [top] = valid.renditions;

  // prettier-ignore
  it.each<[string, Partial<FfmpegArgsOptions>, Error]>([
    ['empty inputUrl', { inputUrl: '' }, new TypeError('inputUrl must not be empty')],
    ['no renditions', { renditions: [] }, new TypeError('at least one rendition is needed')],
    ['a name with a space', { renditions: [{ ...top!, name: 'a b' }] }, new TypeError('invalid rendition name "a b"')],
    ['duplicate names', { renditions: [top!, top!] }, new TypeError('duplicate rendition name "720p30"')],
    ['zero segmentSeconds', { segmentSeconds: 0 }, new RangeError('segmentSeconds must be a positive number, got 0')],
    ['a frame rate of 0', { renditions: [{ ...top!, fps: 0 }] }, new RangeError('rendition 720p30 needs a frame rate above 0')],
    ['a bad codecs string', { renditions: [{ ...top!, codecs: 'hvc1.1' }] }, new TypeError('rendition codecs must start with avc1.PPCCLL, got hvc1.1')],
  ])('buildFfmpegArgs() with %s throws', (_title, change, error) => {
    expect(() => buildFfmpegArgs({ ...valid, ...change })).toThrow(error);
  });
});

describe('helpers', () => {
  it.each([
    ['rtmp://127.0.0.1:1935/live/key', true],
    ['srt://host:9000', true],
    ['RTMP://HOST/app/key', true],
    ['/tmp/in.flv', false],
    ['file:///tmp/in.flv', false],
    ['relative/in.flv', false],
  ])('isNetworkInput(%s) is %s', (url, network) => {
    expect(isNetworkInput(url)).toBe(network);
  });

  it.each([
    [30, '30'],
    [29.97, '30000/1001'],
    [59.94, '60000/1001'],
    [23.976, '24000/1001'],
    [25, '25'],
    [28.8, '28.8'],
  ])('ffmpegRate(%f) is %s', (fps, rate) => {
    expect(ffmpegRate(fps)).toBe(rate);
  });

  it.each([
    [30, 2, 60],
    [29.97, 2, 60],
    [60, 2, 120],
    [25, 4, 100],
    [30, 0.01, 1],
  ])('gopFrames(%f fps, %f s) is %i', (fps, seconds, frames) => {
    expect(gopFrames(fps, seconds)).toBe(frames);
  });
});
