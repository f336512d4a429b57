import type { Rendition } from './hls-types';
import { maxrateKbps, type X264Preset } from './ladder';

/** Everything one ffmpeg run needs: where to read and what to encode. */
export interface FfmpegArgsOptions {
  /** `FLV_STDIN_INPUT` for a live stream fed on stdin, a network URL, or a local file path (read at its native rate). */
  readonly inputUrl: string;
  /** Renditions to produce, in the order of their output pipes. */
  readonly renditions: readonly Rendition[];
  /** Target segment duration in seconds. */
  readonly segmentSeconds: number;
  /** x264 preset of every encoded rung. */
  readonly preset: X264Preset;
  /** Set when the input is the SDP of a share bridge, written on stdin. */
  readonly bridge?: BridgeInputOptions;
}

/** How ffmpeg reads a share bridge: RTP described by an SDP on its stdin. */
export interface BridgeInputOptions {
  /** The ingest node's address the RTP sockets bind to. */
  readonly localAddress: string;
  /** Audio streams of the bridge: none gives every rung silence, two are mixed. */
  readonly audioStreams: number;
}

/** The arguments of one run, around its `-i`. */
export interface FfmpegArgs {
  /** The input URL or path. */
  readonly input: string;
  /** Options placed before `-i`. */
  readonly inputOptions: string[];
  /** Global options and one output per rendition, each to its own pipe. */
  readonly outputOptions: string[];
}

/** File descriptor of the first rendition's output pipe; rendition i writes to `3 + i`. */
export const FIRST_OUTPUT_FD = 3;

/**
 * Nominal LL-HLS part length: a fifth of a second, the short end of the 200-333 ms players
 * expect, since players hold back three parts (PART-HOLD-BACK) behind the live edge.
 */
export const NOMINAL_PART_SECONDS = 0.2;

/** How a rendition's output is cut into parts. */
export interface PartPlan {
  /** ffmpeg's `-frag_duration`, in microseconds: a fragment ends at the frame reaching it. */
  readonly fragDurationUs: number;
  /** The longest part (EXT-X-PART-INF PART-TARGET), in seconds. */
  readonly partTargetSec: number;
}

// Slack of PART-TARGET over a part's length: a frame, and at least an AAC frame (1024 samples
// at 48 kHz). The first video sample of a run also covers the audio encoder's priming delay,
// which makes the first part that much longer; a copied source may have uneven frame durations.
const PART_TARGET_SLACK_SEC = 0.025;

/**
 * Parts of a whole number of frames close to a fifth of a second. Frame durations are constant
 * on an encoded rung, so its fragments end exactly at that many frames (ffmpeg's limit is set a
 * millisecond short of it, so rounding cannot add a frame); PART-TARGET leaves a frame's slack.
 */
export function partPlanOf(rendition: Rendition): PartPlan {
  const frames = Math.max(1, Math.round(rendition.fps * NOMINAL_PART_SECONDS));
  const partSec = frames / rendition.fps;
  const longest = partSec + Math.max(1 / rendition.fps, PART_TARGET_SLACK_SEC);
  return {
    fragDurationUs: Math.max(1000, Math.floor(partSec * 1e6) - 1000),
    // Rounded up to the millisecond; the epsilon keeps 0.2 + 0.025 from rounding up to 0.226.
    partTargetSec: Math.ceil(longest * 1000 - 1e-6) / 1000,
  };
}

/** Input of a live stream that the ingest writes to ffmpeg's stdin as FLV. */
export const FLV_STDIN_INPUT = 'pipe:0';

/** Input of a share bridge: the ingest writes its SDP to ffmpeg's stdin. */
export const SDP_STDIN_INPUT = 'pipe:0';

// RTP packets a bridge input holds back to put reordered ones in order, and how long it waits
// for a missing one (a retransmission the bridge receiver asked for) before it moves on.
const BRIDGE_REORDER_QUEUE_PACKETS = 500;
const BRIDGE_MAX_DELAY_US = 200_000;
// A bridge input is probed for up to this long: until the first key frame, which gives the picture
// size. The bridge receiver asks for one every 500 ms until one arrives, but a sharer may take a
// while to answer (delta frames before it only tell ffmpeg the size is unknown).
const BRIDGE_ANALYZE_US = 5_000_000;

// Microseconds of silence on a network input before ffmpeg gives up; a publisher whose
// connection hangs without closing then ends in an exit the transcoder can act on, instead of an
// ffmpeg waiting forever (https://ffmpeg.org/ffmpeg-protocols.html, option rw_timeout).
const NETWORK_RW_TIMEOUT_US = 10_000_000;

// Rendition names become folder names in object keys and URLs, which need no escaping this way.
const NAME_PATTERN = /^[A-Za-z0-9_-]+$/;

/**
 * Builds the ffmpeg arguments of one run: decode once, encode every rung, and write each rung as
 * fragmented MP4 (H.264 and AAC) to its own pipe, a fragment per LL-HLS part and a key frame at
 * every segment boundary.
 */
export function buildFfmpegArgs(options: FfmpegArgsOptions): FfmpegArgs {
  validate(options);
  const { inputUrl, renditions, bridge } = options;
  const encoded = renditions.filter((r) => !r.passthrough);
  if (bridge && encoded.length !== renditions.length) {
    throw new TypeError('a bridge is encoded on every rung: it has no H.264 to copy');
  }
  // A bridge's audio comes out of the filter graph, one copy per rung, when it is made there:
  // silence without audio, or the mix of the share's audio and the microphone.
  const graphAudio = bridge === undefined ? 'none' : graphAudioOf(bridge.audioStreams);

  const outputOptions: string[] = [
    // Prefixes every log line with its level ("[warning] ..."), so stderr can be routed to the
    // logger by severity without guessing from the text.
    '-loglevel',
    'level+info',
  ];
  if (encoded.length > 0) {
    outputOptions.push(
      '-filter_complex',
      filterGraph(encoded, { letterbox: bridge !== undefined, audio: graphAudio }),
    );
  }

  renditions.forEach((rendition, index) => {
    if (rendition.passthrough) {
      outputOptions.push('-map', '0:v:0', '-c:v', 'copy');
    } else {
      const label = `v${encoded.indexOf(rendition)}`;
      outputOptions.push('-map', `[${label}]`, ...x264Options(rendition, options));
    }
    const { fragDurationUs } = partPlanOf(rendition);
    outputOptions.push(
      '-map',
      graphAudio === 'none' ? '0:a:0' : `[a${index}]`,
      '-c:a',
      'aac',
      '-b:a',
      `${rendition.audioBitrateKbps}k`,
      // 48 kHz stereo on every rung, whatever the publisher sends, so switching rungs never
      // changes the audio format under the player.
      '-ar',
      '48000',
      '-ac',
      '2',
      '-f',
      'mp4',
      // Fragmented MP4 for HLS: the init segment first (empty_moov), a fragment at every key
      // frame and every part's length, offsets relative to each moof so that every fragment
      // stands alone, and no index at the end of a stream that is never seeked.
      '-movflags',
      '+frag_keyframe+empty_moov+default_base_moof+skip_trailer',
      '-frag_duration',
      String(fragDurationUs),
      // Each fragment leaves for the pipe as soon as it is complete.
      '-flush_packets',
      '1',
      `pipe:${FIRST_OUTPUT_FD + index}`,
    );
  });

  return {
    input: inputUrl,
    inputOptions: bridge ? bridgeInputOptions(bridge) : inputOptions(inputUrl),
    outputOptions,
  };
}

/** The full argv after the ffmpeg binary. */
export function toArgv(args: FfmpegArgs): string[] {
  return [...args.inputOptions, '-i', args.input, ...args.outputOptions];
}

/** True when the input is a network URL (a live publisher), false for a local file. */
export function isNetworkInput(inputUrl: string): boolean {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(inputUrl)?.[1];
  return scheme !== undefined && scheme.toLowerCase() !== 'file';
}

/** Frame rate as ffmpeg wants it: NTSC rates as exact fractions (29.97 -> `30000/1001`). */
export function ffmpegRate(fps: number): string {
  if (Number.isInteger(fps)) return String(fps);
  const ntscBase = Math.round(fps * 1.001);
  if (Math.abs(fps - ntscBase / 1.001) < 0.01) return `${ntscBase * 1000}/1001`;
  return String(fps);
}

/** Frames between keyframes so every segment starts with one: frame rate times segment length. */
export function gopFrames(fps: number, segmentSeconds: number): number {
  return Math.max(1, Math.round(fps * segmentSeconds));
}

// The audio a bridge's filter graph makes: silence without audio, the mix of two streams, and
// none for one stream, which every rung takes from the input as it is.
function graphAudioOf(audioStreams: number): 'none' | 'silence' | 'mix' {
  if (audioStreams === 0) return 'silence';
  return audioStreams === 1 ? 'none' : 'mix';
}

function bridgeInputOptions(bridge: BridgeInputOptions): string[] {
  return [
    // The SDP comes on stdin; it may open RTP over UDP and nothing else.
    '-protocol_whitelist',
    'pipe,rtp,udp',
    '-f',
    'sdp',
    // The bridge receiver sends from a port of its own on loopback; the sockets bind there only.
    '-localaddr',
    bridge.localAddress,
    '-reorder_queue_size',
    String(BRIDGE_REORDER_QUEUE_PACKETS),
    '-max_delay',
    String(BRIDGE_MAX_DELAY_US),
    '-analyzeduration',
    String(BRIDGE_ANALYZE_US),
  ];
}

function inputOptions(inputUrl: string): string[] {
  // A pipe cannot be probed by seeking, so its format is named; it ends when the ingest closes it.
  if (inputUrl === FLV_STDIN_INPUT) return ['-f', 'flv'];
  if (isNetworkInput(inputUrl)) return ['-rw_timeout', String(NETWORK_RW_TIMEOUT_US)];
  // A file is read at its native frame rate, so it behaves like a live publisher: segments come
  // out in real time and the speed figure means what it means for a live input.
  return ['-re'];
}

// One decode, then: 4:2:0 once (High profile and every player need it), split once per rung,
// and per rung a constant frame rate followed by the scale. The fps filter comes first so dropped
// frames are never scaled, and it makes the frame count per segment match the GOP exactly.
// setsar=1 keeps pixels square: scaling 16:9 to 854x480 would otherwise yield a 1280:1281 SAR.
// A bridge is letterboxed instead of stretched: a screen share changes size and aspect whenever
// the sender's layer or window does, and the rungs keep their size, so the encoders never restart.
function filterGraph(
  encoded: readonly Rendition[],
  options: { letterbox: boolean; audio: 'none' | 'silence' | 'mix' },
): string {
  const splits = encoded.map((_, i) => `[s${i}]`).join('');
  const chains = encoded.map((r, i) => {
    const size = options.letterbox
      ? `scale=${r.width}:${r.height}:force_original_aspect_ratio=decrease:force_divisible_by=2,` +
        `pad=${r.width}:${r.height}:(ow-iw)/2:(oh-ih)/2`
      : `scale=${r.width}:${r.height}`;
    return `[s${i}]fps=${ffmpegRate(r.fps)},${size},setsar=1[v${i}]`;
  });
  const graph = [`[0:v:0]format=yuv420p,split=${encoded.length}${splits}`, ...chains];
  const outputs = encoded.map((_, i) => `[a${i}]`).join('');
  if (options.audio === 'silence') {
    graph.push(`anullsrc=r=48000:cl=stereo,asplit=${encoded.length}${outputs}`);
  } else if (options.audio === 'mix') {
    // Summed as a browser would play them, not halved; the limiter keeps the sum from clipping.
    // The bridge receiver keeps both inputs flowing with silence, so amix never waits on one.
    graph.push(
      `[0:a:0][0:a:1]amix=inputs=2:duration=longest:dropout_transition=0:normalize=0,` +
        `alimiter=limit=0.95,asplit=${encoded.length}${outputs}`,
    );
  }
  return graph.join(';');
}

function x264Options(rendition: Rendition, options: FfmpegArgsOptions): string[] {
  const gop = gopFrames(rendition.fps, options.segmentSeconds);
  const maxrate = maxrateKbps(rendition);
  const level = levelFromCodecs(rendition.codecs);
  return [
    '-c:v',
    'libx264',
    '-preset:v',
    options.preset,
    // No lookahead, no B-frames, and slices instead of frame threads: a frame leaves the encoder
    // as soon as it is coded, instead of half a second later, for a little more bitrate.
    '-tune:v',
    'zerolatency',
    '-profile:v',
    'high',
    // The same level the master playlist's CODECS announces, so players can trust it.
    '-level:v',
    level,
    '-b:v',
    `${rendition.videoBitrateKbps}k`,
    '-maxrate:v',
    `${maxrate}k`,
    // One second of VBV buffer: a segment can carry at most one second's worth of maxrate on
    // top of maxrate times its duration, which keeps the master playlist's BANDWIDTH close.
    '-bufsize:v',
    `${maxrate}k`,
    '-g:v',
    String(gop),
    // Inert while scene cuts are off (x264 also caps it at keyint/2+1); it keeps the GOP fixed
    // should scene-cut detection ever be turned back on.
    '-keyint_min:v',
    String(gop),
    // No keyframes at scene changes: they would move segment boundaries apart between rungs.
    '-sc_threshold:v',
    '0',
    // Keyframes at the same wall times on every rung whatever its frame rate, so the segments of
    // all rungs start at the same instant and players can switch at any boundary
    // (https://ffmpeg.org/ffmpeg.html#Advanced-Video-options, -force_key_frames expr:).
    '-force_key_frames:v',
    `expr:gte(t,n_forced*${options.segmentSeconds})`,
  ];
}

// The level is the last byte of the avc1 codecs string (avc1.64001f -> 0x1f = 31 -> "3.1").
function levelFromCodecs(codecs: string): string {
  const match = /^avc1\.[0-9a-f]{4}([0-9a-f]{2})/i.exec(codecs);
  if (!match) throw new TypeError(`rendition codecs must start with avc1.PPCCLL, got ${codecs}`);
  return (parseInt(match[1]!, 16) / 10).toFixed(1);
}

function validate(options: FfmpegArgsOptions): void {
  const { inputUrl, renditions, segmentSeconds } = options;
  if (inputUrl.length === 0) throw new TypeError('inputUrl must not be empty');
  if (renditions.length === 0) throw new TypeError('at least one rendition is needed');
  const names = new Set<string>();
  for (const r of renditions) {
    if (!NAME_PATTERN.test(r.name)) throw new TypeError(`invalid rendition name "${r.name}"`);
    if (names.has(r.name)) throw new TypeError(`duplicate rendition name "${r.name}"`);
    if (!(r.fps > 0)) throw new RangeError(`rendition ${r.name} needs a frame rate above 0`);
    names.add(r.name);
  }
  if (!Number.isFinite(segmentSeconds) || segmentSeconds <= 0) {
    throw new RangeError(`segmentSeconds must be a positive number, got ${segmentSeconds}`);
  }
}
