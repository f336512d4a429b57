import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { TypedEmitter, type Logger } from '@hearth/server-common';
import type { Rendition, SegmentReady } from './hls-types';
import {
  choosePreset,
  nextAdaptation,
  selectLadder,
  type EncodingPlan,
  type SourceInfo,
  type X264Preset,
} from './ladder';
import {
  buildFfmpegArgs,
  FIRST_OUTPUT_FD,
  FLV_STDIN_INPUT,
  SDP_STDIN_INPUT,
  toArgv,
} from './ffmpeg-args';
import {
  DEFAULT_SPEED_POLICY,
  parseProgressLine,
  SpeedWindow,
  isInputDamage,
  stderrSeverity,
  type SpeedPolicy,
} from './ffmpeg-progress';
import type { BridgeFeed } from './bridge-input';
import { RenditionOutput, type InitReady, type PartReady } from './rendition-output';

/** How restarts after ffmpeg deaths are paced and bounded. */
export interface RestartPolicy {
  /** Restarts in a row after which the transcoder gives up and emits `failed`. */
  readonly maxAttempts: number;
  /** Delay before the first restart; it doubles with each further attempt. */
  readonly baseDelayMs: number;
  /** Upper bound of the delay between restarts. */
  readonly maxDelayMs: number;
  /** A run that lived this long counts as healthy: the next death starts again at attempt 1. */
  readonly stableMs: number;
}

/** Five restarts in a row, 0.5 s doubling up to 10 s, reset after a minute of healthy running. */
export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  maxAttempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 10_000,
  stableMs: 60_000,
};

/** A live stream handed to ffmpeg as FLV on its stdin, so nothing about it is in ffmpeg's argv. */
export interface FlvFeed {
  /** Sends the stream from its last keyframe on to `sink` until the returned function is called. */
  subscribe(sink: (chunk: Buffer) => void): () => void;
}

/** Settings of one Transcoder. */
export interface TranscoderOptions {
  /** A live FLV feed, a share bridge, or a local file path (read at its native rate). */
  readonly input: FlvFeed | BridgeFeed | string;
  /** Folder for this stream's output; every ffmpeg run writes into its own `run-<n>` folder. */
  readonly workDir: string;
  /** Size and rate of the published video, which bound the ladder. */
  readonly source: SourceInfo;
  /** Target segment duration in seconds. */
  readonly segmentSeconds: number;
  /** Adds a `source` rendition with the publisher's video copied as is. */
  readonly passthrough: boolean;
  /** Receives ffmpeg's stderr and the transcoder's own decisions. */
  readonly logger: Logger;
  /** ffmpeg binary; Debian's `/usr/bin/ffmpeg`, bound to this process, by default. */
  readonly ffmpegPath?: string;
  /** When ffmpeg counts as too slow; the 0.95x over 10 s by default. */
  readonly speedPolicy?: SpeedPolicy;
  /** Pacing and bound of restarts after deaths. */
  readonly restartPolicy?: RestartPolicy;
  /** How long ffmpeg may take to finish after `q` before it is killed. */
  readonly stopTimeoutMs?: number;
}

/** Payload of the `adapted` event: the cheaper settings ffmpeg was restarted with. */
export interface AdaptedInfo {
  /** Why and what changed, e.g. `speed 0.81x below 0.95x: preset veryfast -> superfast`. */
  readonly reason: string;
  /** x264 preset from now on. */
  readonly preset: X264Preset;
  /** Renditions from now on; a dropped rung gets no further segments. */
  readonly renditions: readonly Rendition[];
}

export type { InitReady, PartReady } from './rendition-output';

/** Events of a Transcoder. */
export type TranscoderEvents = {
  /** A run's init segment for a rendition, before any of that run's parts. */
  init: [InitReady];
  /** A part, as soon as ffmpeg wrote it; in order within a rendition. */
  part: [PartReady];
  /** A segment is complete on disk; emitted once per segment, after its parts. */
  segment: [SegmentReady];
  /** Output seconds per wall second over the speed window, after the warm-up. */
  speed: [number];
  /** ffmpeg fell behind and was restarted with a faster preset or one rung fewer. */
  adapted: [AdaptedInfo];
  /** ffmpeg said its input was damaged (a packet lost, a frame undecodable); with the line. */
  inputDamaged: [line: string];
  /** ffmpeg died and a replacement is encoding again; `attempt` counts restarts in a row. */
  restarted: [attempt: number];
  /** ffmpeg did not start, or kept dying and the transcoder gave up; nothing follows it. */
  failed: [Error];
  /** ffmpeg exited after `stop()` or the end of the input, and every segment was emitted. */
  ended: [];
};

/** ffmpeg could not be spawned, or exited before it encoded a single frame. */
export class FfmpegStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FfmpegStartError';
  }
}

/** A method was called in a state that does not allow it, e.g. `start()` twice. */
export class InvalidStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidStateError';
  }
}

/** Lifecycle of a Transcoder. */
export type TranscoderState = 'idle' | 'running' | 'stopping' | 'ended' | 'failed';

/**
 * Debian's ffmpeg (ENVIRONMENT.md: libx264 and the native aac encoder), through a script that
 * binds it to this process: it dies with the ingest node, even when that one is SIGKILLed (a
 * bridge's ffmpeg would otherwise wait for RTP forever).
 */
export const DEFAULT_FFMPEG_PATH = path.join(import.meta.dirname, '../bin/ffmpeg-bound.sh');

// Long enough for ffmpeg to flush a last segment of every rung after `q`, short enough that a
// wedged ffmpeg does not hold up a shutdown.
const DEFAULT_STOP_TIMEOUT_MS = 5_000;

// Warning and error lines kept to explain an exit.
const KEPT_ERROR_LINES = 5;

// Longest stderr line read whole; the rest of a longer one is dropped.
const MAX_LINE_CHARS = 4096;

// FLV waiting in ffmpeg's stdin pipe beyond this means ffmpeg stopped reading: about 16 s of a
// 8 Mbit/s publisher. The run is killed and restarted rather than buffering without bound.
const MAX_FEED_BACKLOG_BYTES = 16 * 1024 * 1024;

function isBridge(input: TranscoderOptions['input']): input is BridgeFeed {
  return typeof input === 'object' && 'sdp' in input;
}

interface Run {
  readonly index: number;
  readonly plan: EncodingPlan;
  readonly startedAtMs: number;
  readonly speed: SpeedWindow;
  /** One output per rendition, in the order of their pipes. */
  readonly outputs: RenditionOutput[];
  /** Set when this run replaces one that died. */
  readonly restartAttempt: number | undefined;
  readonly errorLines: string[];
  process: ChildProcess | undefined;
  killTimer: NodeJS.Timeout | undefined;
  quitReason: 'stop' | 'adapt' | undefined;
  up: boolean;
  exited: boolean;
  /** Stops the live feed into this run's stdin. */
  unsubscribe: (() => void) | undefined;
}

/**
 * Runs one ffmpeg per live stream that decodes once and encodes the whole ladder to HLS,
 * reports each finished segment, steps down when ffmpeg falls behind, and restarts it when it
 * dies.
 */
export class Transcoder {
  /** Transcoder events: segments, speed, adaptations, restarts and the end. */
  readonly events: TypedEmitter<TranscoderEvents>;
  readonly #options: TranscoderOptions;
  readonly #logger: Logger;
  readonly #speedPolicy: SpeedPolicy;
  readonly #restartPolicy: RestartPolicy;
  #plan: EncodingPlan;
  #state: TranscoderState = 'idle';
  #run: Run | undefined;
  #runCount = 0;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #cannotAdaptLogged = false;
  #startWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #stopped: Promise<void> | undefined;
  #resolveStopped: (() => void) | undefined;
  // Media sequence number of each rendition's next segment, across runs.
  readonly #nextSequence = new Map<string, number>();

  constructor(options: TranscoderOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#speedPolicy = options.speedPolicy ?? DEFAULT_SPEED_POLICY;
    this.#restartPolicy = options.restartPolicy ?? DEFAULT_RESTART_POLICY;
    const renditions = selectLadder(options.source, { passthrough: options.passthrough });
    this.#plan = { preset: choosePreset(renditions, os.availableParallelism()), renditions };
    this.events = new TypedEmitter((error, event) =>
      options.logger.error({ err: error, event }, 'transcoder listener failed'),
    );
  }

  /** Where the transcoder is in its lifecycle. */
  get state(): TranscoderState {
    return this.#state;
  }

  /** Renditions being produced now (a copy). */
  get renditions(): Rendition[] {
    return [...this.#plan.renditions];
  }

  /** x264 preset in use now. */
  get preset(): X264Preset {
    return this.#plan.preset;
  }

  /** Process id of the running ffmpeg, if one is running. */
  get pid(): number | undefined {
    const run = this.#run;
    return run && !run.exited ? run.process?.pid : undefined;
  }

  /**
   * Spawns ffmpeg and resolves once it encodes. When ffmpeg cannot be spawned or exits first, it
   * rejects with FfmpegStartError and emits `failed`; no restart is attempted then.
   */
  start(): Promise<void> {
    if (this.#state !== 'idle') {
      return Promise.reject(new InvalidStateError(`start() called while ${this.#state}`));
    }
    this.#state = 'running';
    const started = new Promise<void>((resolve, reject) => {
      this.#startWaiter = { resolve, reject };
    });
    this.#launch(undefined);
    return started;
  }

  /**
   * Asks ffmpeg to finish (`q`), kills it if it has not exited within the stop timeout, emits
   * the remaining segments and then `ended`. Idempotent; resolves after `ended`.
   */
  stop(): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#stopped = new Promise<void>((resolve) => {
      this.#resolveStopped = resolve;
    });
    if (this.#state === 'running') {
      this.#state = 'stopping';
      clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
      const run = this.#run;
      if (run && !run.exited) this.#quit(run, 'stop');
      else this.#end();
    } else if (this.#state === 'idle') {
      this.#end();
    } else {
      // Already ended or failed: nothing runs any more.
      this.#resolveStopped?.();
    }
    return this.#stopped;
  }

  #launch(restartAttempt: number | undefined): void {
    const index = this.#runCount++;
    const runDir = path.join(this.#options.workDir, `run-${index}`);
    const plan = this.#plan;
    const run: Run = {
      index,
      plan,
      startedAtMs: performance.now(),
      speed: new SpeedWindow(this.#speedPolicy, performance.now()),
      outputs: [],
      restartAttempt,
      errorLines: [],
      process: undefined,
      killTimer: undefined,
      quitReason: undefined,
      up: false,
      exited: false,
      unsubscribe: undefined,
    };
    for (const rendition of plan.renditions) {
      run.outputs.push(
        new RenditionOutput({
          rendition,
          run: index,
          dir: path.join(runDir, rendition.name),
          segmentSeconds: this.#options.segmentSeconds,
          firstMsn: this.#nextSequence.get(rendition.name) ?? 0,
          logger: this.#logger,
          sink: {
            init: (init) => this.events.safeEmit('init', init),
            part: (part) => this.events.safeEmit('part', part),
            segment: (segment) => this.events.safeEmit('segment', segment),
            unreadable: (error) => {
              this.#logger.error({ run: index, err: error }, 'ffmpeg wrote something unreadable');
              run.process?.kill('SIGKILL');
            },
          },
        }),
      );
    }
    this.#run = run;
    const input = this.#options.input;
    try {
      const bridge = isBridge(input) ? input : undefined;
      const args = buildFfmpegArgs({
        inputUrl: typeof input === 'string' ? input : bridge ? SDP_STDIN_INPUT : FLV_STDIN_INPUT,
        bridge,
        renditions: plan.renditions,
        segmentSeconds: this.#options.segmentSeconds,
        preset: plan.preset,
      });
      // The run's folder, with one folder per rendition for its segments.
      for (const rendition of plan.renditions) {
        fs.mkdirSync(path.join(runDir, rendition.name), { recursive: true });
      }
      const ffmpegPath = this.#options.ffmpegPath ?? DEFAULT_FFMPEG_PATH;
      this.#logger.info(
        { run: index, preset: plan.preset, renditions: plan.renditions.map((r) => r.name) },
        'starting ffmpeg',
      );
      this.#logger.debug(
        { run: index, argv: toArgv(args).map(redactStreamUrls) },
        'ffmpeg arguments',
      );
      // stdin carries the input (or `q`), stderr the log and progress, and fd 3 + i the
      // fragmented MP4 of rendition i. It runs in the run's folder, which is how an operator
      // (or a test) tells which stream an ffmpeg belongs to: its argv names no stream.
      const child = spawn(ffmpegPath, toArgv(args), {
        cwd: runDir,
        stdio: ['pipe', 'ignore', 'pipe', ...run.outputs.map(() => 'pipe' as const)],
      });
      child.once('spawn', () => this.#onSpawned(run, child));
      child.once('error', (error) => this.#onExit(run, error));
      // 'close' comes once ffmpeg exited and every pipe is read to its end, so the last
      // fragments are in before the run is closed.
      child.once('close', (code, signal) =>
        this.#onExit(
          run,
          code === 0 ? undefined : new Error(`ffmpeg exited with code ${code}, signal ${signal}`),
        ),
      );
      readLines(child.stderr!, (line) => this.#onStderr(run, line));
      run.outputs.forEach((output, outputIndex) => {
        const pipe = child.stdio[FIRST_OUTPUT_FD + outputIndex] as Readable;
        pipe.on('data', (chunk: Buffer) => {
          if (!run.exited) output.push(chunk);
        });
        pipe.on('error', (error) =>
          this.#logger.warn({ run: index, err: error }, 'reading an ffmpeg output failed'),
        );
      });
    } catch (error) {
      // Same path as an ffmpeg that exits at once, but never re-entrantly.
      queueMicrotask(() => this.#onExit(run, error as Error));
    }
  }

  #onSpawned(run: Run, child: ChildProcess): void {
    if (run.exited) {
      child.kill('SIGKILL');
      return;
    }
    run.process = child;
    this.#logger.info({ run: run.index, pid: child.pid }, 'ffmpeg spawned');
    // Writing to stdin races with ffmpeg exiting by itself; the resulting EPIPE is harmless.
    child.stdin?.on('error', (error) =>
      this.#logger.debug({ run: run.index, err: error }, 'ffmpeg stdin closed'),
    );
    const input = this.#options.input;
    // A bridge's SDP is all ffmpeg reads on stdin; the media then comes over RTP.
    if (isBridge(input)) child.stdin?.end(input.sdp);
    else if (typeof input !== 'string' && child.stdin) this.#feed(run, input, child.stdin);
    // A quit requested before the process existed is delivered now.
    if (run.quitReason) this.#signalQuit(run);
  }

  #feed(run: Run, input: FlvFeed, stdin: NodeJS.WritableStream & { writableLength: number }): void {
    run.unsubscribe = input.subscribe((chunk) => {
      if (run.exited || run.quitReason) return;
      if (stdin.writableLength > MAX_FEED_BACKLOG_BYTES) {
        this.#logger.error({ run: run.index }, 'ffmpeg stopped reading its input; killing it');
        run.unsubscribe?.();
        run.process?.kill('SIGKILL');
        return;
      }
      stdin.write(chunk);
    });
  }

  #onStderr(run: Run, rawLine: string): void {
    const line = redactStreamUrls(rawLine);
    const severity = stderrSeverity(line);
    if (severity === 'progress') {
      this.#logger.trace({ run: run.index }, line);
      this.#onProgress(run, line);
    } else if (severity === 'info') {
      this.#logger.debug({ run: run.index }, line);
    } else {
      this.#logger.warn({ run: run.index }, line);
      if (isInputDamage(line)) this.events.safeEmit('inputDamaged', line);
      run.errorLines.push(line);
      if (run.errorLines.length > KEPT_ERROR_LINES) run.errorLines.shift();
    }
  }

  #onProgress(run: Run, line: string): void {
    const progress = parseProgressLine(line);
    if (!progress || run.exited) return;
    if (!run.up) this.#onUp(run);
    if (progress.timeSec !== null) run.speed.add(progress.timeSec, performance.now());
    const speed = run.speed.speed();
    if (speed === undefined) return;
    this.events.safeEmit('speed', speed);
    if (run.quitReason === undefined && this.#state === 'running' && run.speed.isBehind()) {
      this.#adapt(run, speed);
    }
  }

  #onUp(run: Run): void {
    run.up = true;
    this.#logger.info({ run: run.index, pid: run.process?.pid }, 'ffmpeg is encoding');
    this.#startWaiter?.resolve();
    this.#startWaiter = undefined;
    if (run.restartAttempt !== undefined) this.events.safeEmit('restarted', run.restartAttempt);
  }

  #adapt(run: Run, speed: number): void {
    const next = nextAdaptation(run.plan);
    const measured = `speed ${speed.toFixed(2)}x below ${this.#speedPolicy.minSpeed}x`;
    if (!next) {
      if (!this.#cannotAdaptLogged) {
        this.#logger.warn({ run: run.index, speed }, `${measured}; no cheaper settings are left`);
        this.#cannotAdaptLogged = true;
      }
      return;
    }
    const reason = `${measured}: ${next.change}`;
    this.#plan = { preset: next.preset, renditions: next.renditions };
    this.#logger.warn(
      {
        run: run.index,
        speed,
        preset: next.preset,
        renditions: next.renditions.map((r) => r.name),
      },
      `ffmpeg falls behind, restarting it: ${reason}`,
    );
    this.events.safeEmit('adapted', { reason, preset: next.preset, renditions: next.renditions });
    this.#quit(run, 'adapt');
  }

  #quit(run: Run, reason: 'stop' | 'adapt'): void {
    const alreadyQuitting = run.quitReason !== undefined;
    run.quitReason = reason;
    if (alreadyQuitting) return;
    run.killTimer = setTimeout(() => {
      this.#logger.warn({ run: run.index }, 'ffmpeg did not exit in time, killing it');
      if (run.process) run.process.kill('SIGKILL');
      // Still not spawned: the run is given up here, and a late spawn is killed on arrival.
      else this.#onExit(run, new Error('ffmpeg was not spawned in time'));
    }, this.#options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
    if (run.process) this.#signalQuit(run);
  }

  #signalQuit(run: Run): void {
    const child = run.process;
    if (!child) return;
    if (run.unsubscribe) {
      // A live feed ends like a publisher leaving: at the end of its input ffmpeg closes every
      // output properly, with the last segments and ENDLIST.
      run.unsubscribe();
      if (run.up) {
        child.stdin?.end();
        return;
      }
      child.kill('SIGTERM');
    } else if (run.up && child.stdin?.writable) {
      // `q` makes ffmpeg close every output properly: last segments and ENDLIST are written.
      child.stdin.write('q');
    } else {
      // Before it encodes, ffmpeg does not read stdin (it may still be opening the input) and has
      // nothing to flush; SIGTERM interrupts a blocking open at once.
      child.kill('SIGTERM');
    }
  }

  #onExit(run: Run, rawError: Error | undefined): void {
    if (run.exited) return;
    const error = rawError ? new Error(redactStreamUrls(rawError.message)) : undefined;
    run.exited = true;
    run.unsubscribe?.();
    clearTimeout(run.killTimer);
    this.#closeRun(run);
    const livedMs = performance.now() - run.startedAtMs;
    // The kept warning and error lines say what went wrong.
    const stderr = run.errorLines.length > 0 ? ` (${run.errorLines.join(' | ')})` : '';
    const detail = `${error ? error.message : 'exit code 0'}${stderr}`;
    this.#logger.info({ run: run.index, livedMs: Math.round(livedMs), detail }, 'ffmpeg exited');

    if (!run.up && this.#startWaiter) {
      const reason = this.#state === 'stopping' ? 'stopped before ffmpeg encoded' : detail;
      const startError = new FfmpegStartError(`ffmpeg did not start: ${reason}`, { cause: error });
      this.#startWaiter.reject(startError);
      this.#startWaiter = undefined;
      if (this.#state === 'running') {
        // No restart: a binary or input that fails right away will fail again. `failed` keeps
        // the rule that every transcoder finishes with exactly one of `ended` or `failed`.
        this.#state = 'failed';
        this.#logger.error({ err: startError }, 'ffmpeg did not start');
        this.events.safeEmit('failed', startError);
        return;
      }
    }
    if (this.#state === 'stopping') {
      this.#end();
    } else if (run.quitReason === 'adapt' && run.up) {
      this.#launch(undefined);
    } else if (!run.up) {
      this.#scheduleRestart(run, `ffmpeg did not start: ${detail}`, error);
    } else if (!error) {
      this.#logger.info({ run: run.index }, 'input ended');
      this.#end();
    } else {
      this.#logger.error({ run: run.index, err: error, detail }, 'ffmpeg died');
      this.#scheduleRestart(run, detail, error);
    }
  }

  #scheduleRestart(run: Run, detail: string, cause: Error | undefined): void {
    const livedMs = performance.now() - run.startedAtMs;
    this.#failures = run.up && livedMs >= this.#restartPolicy.stableMs ? 1 : this.#failures + 1;
    const attempt = this.#failures;
    const { maxAttempts, baseDelayMs, maxDelayMs } = this.#restartPolicy;
    if (attempt > maxAttempts) {
      this.#state = 'failed';
      const message = `ffmpeg failed ${maxAttempts} restarts in a row; last: ${detail}`;
      const failure = new Error(message, { cause });
      this.#logger.error({ err: failure }, 'giving up on ffmpeg');
      this.events.safeEmit('failed', failure);
      return;
    }
    const delayMs = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
    this.#logger.warn({ run: run.index, attempt, delayMs }, 'restarting ffmpeg');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#state === 'running') this.#launch(attempt);
    }, delayMs);
  }

  #end(): void {
    this.#state = 'ended';
    this.events.safeEmit('ended');
    this.#resolveStopped?.();
  }

  // Emits each rendition's last segment (at the end of its output, the segment being cut is
  // complete) and notes where the next run's segments are numbered from.
  #closeRun(run: Run): void {
    for (const output of run.outputs) {
      output.finish();
      this.#nextSequence.set(output.rendition, output.nextMsn);
    }
  }
}

// Calls `onLine` for each line ffmpeg writes: its progress lines end in \r, the others in \n.
function readLines(stream: Readable, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split(/\r\n|\r|\n/);
    partial = lines.pop() ?? '';
    // A line without an end is cut, so one endless line cannot grow without bound.
    if (partial.length > MAX_LINE_CHARS) partial = partial.slice(0, MAX_LINE_CHARS);
    for (const line of lines) if (line !== '') onLine(line);
  });
  stream.on('end', () => {
    if (partial !== '') onLine(partial);
  });
}

/**
 * Hides the stream name and query of RTMP URLs in text meant for logs and errors: the ingest's
 * input URL carries the publisher's stream key and the internal play token.
 */
export function redactStreamUrls(text: string): string {
  return text.replace(/(rtmps?:\/\/[^/\s]+\/[^/\s]+\/)[^\s'":]+/g, '$1<redacted>');
}
