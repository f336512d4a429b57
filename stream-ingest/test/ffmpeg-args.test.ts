import { describe, expect, it } from 'vitest';
import {
  buildFfmpegArgs,
  ffmpegRate,
  gopFrames,
  isNetworkInput,
  toArgv,
  type FfmpegArgsOptions,
} from '../src/ffmpeg-args';
import { selectLadder } from '../src/ladder';

// The per-rung x264 options, spelled out once so the expected argv arrays stay readable; every
// value in them is still a literal of the test.
function x264(
  index: number,
  preset: string,
  level: string,
  kbps: number,
  maxKbps: number,
  gop: number,
  seg: string,
): string[] {
  // prettier-ignore
  return [
    `-c:v:${index}`, 'libx264',
    `-preset:v:${index}`, preset,
    `-profile:v:${index}`, 'high',
    `-level:v:${index}`, level,
    `-b:v:${index}`, `${kbps}k`,
    `-maxrate:v:${index}`, `${maxKbps}k`,
    `-bufsize:v:${index}`, `${maxKbps}k`,
    `-g:v:${index}`, String(gop),
    `-keyint_min:v:${index}`, String(gop),
    `-sc_threshold:v:${index}`, '0',
    `-force_key_frames:v:${index}`, `expr:gte(t,n_forced*${seg})`,
  ];
}

function aac(index: number, kbps: number): string[] {
  return ['-map', '0:a:0', `-c:a:${index}`, 'aac', `-b:a:${index}`, `${kbps}k`];
}

describe('buildFfmpegArgs() and toArgv()', () => {
  it('toArgv() for a 720p30 file input reads it at native rate and encodes two rungs', () => {
    const args = buildFfmpegArgs({
      inputUrl: '/media/in.flv',
      workDir: '/work/s1/run-0',
      renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
      segmentSeconds: 2,
      preset: 'veryfast',
      listSize: 6,
    });
    // prettier-ignore
    expect(toArgv(args)).toEqual([
      '-re',
      '-i', '/media/in.flv',
      '-y',
      '-loglevel', 'level+info',
      '-filter_complex',
      '[0:v:0]format=yuv420p,split=2[s0][s1];' +
        '[s0]fps=30,scale=1280:720,setsar=1[v0];' +
        '[s1]fps=30,scale=854:480,setsar=1[v1]',
      '-map', '[v0]', ...x264(0, 'veryfast', '3.1', 2000, 2200, 60, '2'), ...aac(0, 128),
      '-map', '[v1]', ...x264(1, 'veryfast', '3.1', 1000, 1100, 60, '2'), ...aac(1, 128),
      '-ar', '48000',
      '-ac', '2',
      '-f', 'hls',
      '-hls_time', '2',
      '-hls_list_size', '6',
      '-hls_flags', 'independent_segments+program_date_time+temp_file',
      '-hls_segment_filename', '/work/s1/run-0/%v/seg_%05d.ts',
      '-var_stream_map', 'v:0,a:0,name:720p30 v:1,a:1,name:480p30',
      '/work/s1/run-0/%v/index.m3u8',
    ]);
  });

  it('toArgv() for a 1080p60 RTMP input with passthrough copies the source and encodes four rungs', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1:1935/live/key',
      workDir: '/work/s2/run-3',
      renditions: selectLadder({ width: 1920, height: 1080, fps: 60 }, { passthrough: true }),
      segmentSeconds: 2,
      preset: 'superfast',
      listSize: 5,
    });
    // prettier-ignore
    expect(toArgv(args)).toEqual([
      '-rw_timeout', '10000000',
      '-i', 'rtmp://127.0.0.1:1935/live/key',
      '-y',
      '-loglevel', 'level+info',
      '-filter_complex',
      '[0:v:0]format=yuv420p,split=4[s0][s1][s2][s3];' +
        '[s0]fps=60,scale=1920:1080,setsar=1[v0];' +
        '[s1]fps=30,scale=1920:1080,setsar=1[v1];' +
        '[s2]fps=30,scale=1280:720,setsar=1[v2];' +
        '[s3]fps=30,scale=854:480,setsar=1[v3]',
      '-map', '0:v:0', '-c:v:0', 'copy', ...aac(0, 160),
      '-map', '[v0]', ...x264(1, 'superfast', '4.2', 7000, 7700, 120, '2'), ...aac(1, 160),
      '-map', '[v1]', ...x264(2, 'superfast', '4.0', 4000, 4400, 60, '2'), ...aac(2, 160),
      '-map', '[v2]', ...x264(3, 'superfast', '3.1', 2000, 2200, 60, '2'), ...aac(3, 128),
      '-map', '[v3]', ...x264(4, 'superfast', '3.1', 1000, 1100, 60, '2'), ...aac(4, 128),
      '-ar', '48000',
      '-ac', '2',
      '-f', 'hls',
      '-hls_time', '2',
      '-hls_list_size', '5',
      '-hls_flags', 'independent_segments+program_date_time+temp_file',
      '-hls_segment_filename', '/work/s2/run-3/%v/seg_%05d.ts',
      '-var_stream_map',
      'v:0,a:0,name:source v:1,a:1,name:1080p60 v:2,a:2,name:1080p30 ' +
        'v:3,a:3,name:720p30 v:4,a:4,name:480p30',
      '/work/s2/run-3/%v/index.m3u8',
    ]);
  });

  it('toArgv() for 720p59.94 with 1.5 s segments uses NTSC fractions and rounds the GOP', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1/live/k',
      workDir: '/w',
      renditions: selectLadder({ width: 1280, height: 720, fps: 59.94 }),
      segmentSeconds: 1.5,
      preset: 'veryfast',
      listSize: 4,
    });
    const argv = toArgv(args);
    expect(argv[argv.indexOf('-filter_complex') + 1]).toEqual(
      '[0:v:0]format=yuv420p,split=3[s0][s1][s2];' +
        '[s0]fps=60000/1001,scale=1280:720,setsar=1[v0];' +
        '[s1]fps=30000/1001,scale=1280:720,setsar=1[v1];' +
        '[s2]fps=30000/1001,scale=854:480,setsar=1[v2]',
    );
    const gops = argv.flatMap((arg, i) => (/^-g:v:\d$/.test(arg) ? [[arg, argv[i + 1]]] : []));
    expect(gops).toEqual([
      ['-g:v:0', '90'],
      ['-g:v:1', '45'],
      ['-g:v:2', '45'],
    ]);
    expect(argv[argv.indexOf('-force_key_frames:v:2') + 1]).toBe('expr:gte(t,n_forced*1.5)');
  });

  it('toArgv() for a passthrough-only ladder has no filter graph and no x264', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'rtmp://127.0.0.1/live/k',
      workDir: '/w',
      renditions: selectLadder(
        { width: 1280, height: 720, fps: 30 },
        { passthrough: true, maxRungs: 1 },
      ),
      segmentSeconds: 2,
      preset: 'veryfast',
      listSize: 6,
    });
    // prettier-ignore
    expect(args.outputOptions.slice(0, 12)).toEqual([
      '-loglevel', 'level+info',
      '-map', '0:v:0', '-c:v:0', 'copy',
      ...aac(0, 128),
    ]);
    expect(args.outputOptions).not.toContain('-filter_complex');
    expect(args.outputOptions).not.toContain('libx264');
  });

  it('buildFfmpegArgs() returns the three parts fluent-ffmpeg takes', () => {
    const args = buildFfmpegArgs({
      inputUrl: '/in.flv',
      workDir: '/w',
      renditions: selectLadder({ width: 854, height: 480, fps: 30 }),
      segmentSeconds: 2,
      preset: 'veryfast',
      listSize: 6,
    });
    expect(args.input).toBe('/in.flv');
    expect(args.inputOptions).toEqual(['-re']);
    expect(args.output).toBe('/w/%v/index.m3u8');
  });

  it('buildFfmpegArgs() for a bridge reads the SDP on stdin, letterboxes every rung and, without audio, encodes silence', () => {
    const args = buildFfmpegArgs({
      inputUrl: 'pipe:0',
      workDir: '/w',
      renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
      segmentSeconds: 2,
      preset: 'veryfast',
      listSize: 6,
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
        workDir: '/w',
        renditions: selectLadder({ width: 1280, height: 720, fps: 30 }, { passthrough: true }),
        segmentSeconds: 2,
        preset: 'veryfast',
        listSize: 6,
        bridge: { localAddress: '10.0.0.2', audioStreams: 1 },
      }),
    ).toThrow('a bridge is encoded on every rung: it has no H.264 to copy');
  });

  it('buildFfmpegArgs() for a bridge takes one audio stream as it is, and mixes two (the share and the microphone) into every rung', () => {
    const withAudio = (audioStreams: number) =>
      buildFfmpegArgs({
        inputUrl: 'pipe:0',
        workDir: '/w',
        renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
        segmentSeconds: 2,
        preset: 'veryfast',
        listSize: 6,
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
    workDir: '/w',
    renditions: selectLadder({ width: 1280, height: 720, fps: 30 }),
    segmentSeconds: 2,
    preset: 'veryfast',
    listSize: 6,
  };
  const [top] = valid.renditions;

  // prettier-ignore
  it.each<[string, Partial<FfmpegArgsOptions>, Error]>([
    ['empty inputUrl', { inputUrl: '' }, new TypeError('inputUrl must not be empty')],
    ['a % in workDir', { workDir: '/w/100%' }, new TypeError('workDir must not contain "%": /w/100%')],
    ['a relative workDir', { workDir: 'w' }, new TypeError('workDir must be absolute: w')],
    ['no renditions', { renditions: [] }, new TypeError('at least one rendition is needed')],
    ['a name with a space', { renditions: [{ ...top!, name: 'a b' }] }, new TypeError('invalid rendition name "a b"')],
    ['duplicate names', { renditions: [top!, top!] }, new TypeError('duplicate rendition name "720p30"')],
    ['zero segmentSeconds', { segmentSeconds: 0 }, new RangeError('segmentSeconds must be a positive number, got 0')],
    ['a fractional listSize', { listSize: 2.5 }, new RangeError('listSize must be a positive integer, got 2.5')],
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
