import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '@hearth/server-common';
import type { Rendition, SegmentReady } from '../../src/hls-types';
import { S3Storage, type S3StorageConfig } from '../../src/storage/s3-storage';
import { TEST_BUCKET, type TestS3Server } from './s3rver';

/** A logger that stays quiet: the failures the tests cause on purpose are logged as errors. */
export const silentLogger = createLogger('test', { level: 'silent' });

/** Renditions with plausible values, named as given. */
export function testRenditions(...names: string[]): Rendition[] {
  return names.map((name, index) => ({
    name,
    width: 1280 >> index,
    height: 720 >> index,
    fps: 30,
    videoBitrateKbps: 3000 >> index,
    audioBitrateKbps: 128,
    codecs: 'avc1.64001f,mp4a.40.2',
    passthrough: false,
  }));
}

/** A master playlist text for the renditions, as the transcoder side would render it. */
export function testMasterPlaylist(renditions: readonly Rendition[]): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-INDEPENDENT-SEGMENTS'];
  for (const rendition of renditions) {
    lines.push(
      `#EXT-X-STREAM-INF:BANDWIDTH=${(rendition.videoBitrateKbps + rendition.audioBitrateKbps) * 1000},RESOLUTION=${rendition.width}x${rendition.height},CODECS="${rendition.codecs}"`,
      `${rendition.name}/index.m3u8`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Writes synthetic segment files into a temporary folder the way the transcoder would, with
 * program date times that advance by each segment's duration per rendition.
 */
export class SegmentSource {
  /** Folder holding the files. */
  readonly directory: string;
  readonly #start: number;
  readonly #bytes: number;
  readonly #count = new Map<string, number>();
  readonly #clock = new Map<string, number>();

  constructor(options: { bytes?: number; start?: Date } = {}) {
    this.directory = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-segments-'));
    this.#bytes = options.bytes ?? 2048;
    this.#start = (options.start ?? new Date('2025-01-01T12:00:00.000Z')).getTime();
  }

  /**
   * Writes the next segment file of a rendition and returns its SegmentReady event; its run is
   * 0 unless given (the publisher needs that run's init segment first).
   */
  next(
    rendition: string,
    options: { durationSec?: number; discontinuity?: boolean; run?: number } = {},
  ) {
    const index = this.#count.get(rendition) ?? 0;
    const durationSec = options.durationSec ?? 2;
    const startMs = this.#clock.get(rendition) ?? this.#start;
    this.#count.set(rendition, index + 1);
    this.#clock.set(rendition, startMs + durationSec * 1000);
    const localPath = path.join(this.directory, `${rendition}-${index}.m4s`);
    const label = Buffer.from(`${rendition} segment ${index}\n`);
    const body = Buffer.alloc(Math.max(this.#bytes, label.length), 0x47);
    label.copy(body);
    fs.writeFileSync(localPath, body);
    const segment: SegmentReady = {
      rendition,
      localPath,
      sequence: index,
      run: options.run ?? 0,
      durationSec,
      programDateTime: new Date(startMs),
      discontinuity: options.discontinuity ?? false,
    };
    return segment;
  }

  /** Files still in the folder. */
  remaining(): string[] {
    return fs.readdirSync(this.directory).sort();
  }

  /** Deletes the folder. */
  remove(): void {
    fs.rmSync(this.directory, { recursive: true, force: true });
  }
}

/** What a media playlist says, parsed back for assertions. */
export interface ParsedPlaylist {
  /** EXT-X-TARGETDURATION. */
  readonly targetDuration: number;
  /** EXT-X-MEDIA-SEQUENCE. */
  readonly mediaSequence: number;
  /** EXT-X-DISCONTINUITY-SEQUENCE. */
  readonly discontinuitySequence: number;
  /** EXT-X-PLAYLIST-TYPE, if any. */
  readonly playlistType: string | undefined;
  /** Segment URIs in order. */
  readonly uris: string[];
  /** URIs of the segments preceded by EXT-X-DISCONTINUITY. */
  readonly discontinuities: string[];
  /** Whether EXT-X-ENDLIST is present. */
  readonly ended: boolean;
}

function tagNumber(lines: readonly string[], tag: string): number {
  const line = lines.find((candidate) => candidate.startsWith(`${tag}:`));
  return line === undefined ? Number.NaN : Number(line.slice(tag.length + 1));
}

/** Parses the tags the publisher writes out of a media playlist. */
export function parsePlaylist(text: string): ParsedPlaylist {
  const lines = text.split('\n').filter((line) => line !== '');
  const uris: string[] = [];
  const discontinuities: string[] = [];
  let flagged = false;
  for (const line of lines) {
    if (line === '#EXT-X-DISCONTINUITY') flagged = true;
    else if (!line.startsWith('#')) {
      uris.push(line);
      if (flagged) discontinuities.push(line);
      flagged = false;
    }
  }
  return {
    targetDuration: tagNumber(lines, '#EXT-X-TARGETDURATION'),
    mediaSequence: tagNumber(lines, '#EXT-X-MEDIA-SEQUENCE'),
    discontinuitySequence: tagNumber(lines, '#EXT-X-DISCONTINUITY-SEQUENCE'),
    playlistType: lines
      .find((line) => line.startsWith('#EXT-X-PLAYLIST-TYPE:'))
      ?.slice('#EXT-X-PLAYLIST-TYPE:'.length),
    uris,
    discontinuities,
    ended: lines.includes('#EXT-X-ENDLIST'),
  };
}

/** An S3Storage pointed at a test server (or a proxy in front of it). */
export function s3StorageFor(
  server: Pick<TestS3Server, 'endpoint'>,
  overrides: Partial<S3StorageConfig> = {},
): S3Storage {
  return new S3Storage({
    endpoint: server.endpoint,
    region: 'us-east-1',
    bucket: TEST_BUCKET,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    forcePathStyle: true,
    ...overrides,
  });
}

/** A plain HTTP GET of an object on the test server, as a player would do it. */
export async function fetchObject(
  endpoint: string,
  key: string,
): Promise<{
  status: number;
  contentType: string | null;
  cacheControl: string | null;
  text: string;
}> {
  const response = await fetch(`${endpoint}/${TEST_BUCKET}/${key}`);
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    cacheControl: response.headers.get('cache-control'),
    text: await response.text(),
  };
}

/**
 * Reads a playlist while it may be being replaced, or undefined when it does not exist or the
 * read was torn. s3rver (unlike S3) overwrites objects in place, so a read that overlaps a write
 * can stall until the socket times out or return a cut-off body; such reads are skipped, which
 * the whole-line check detects.
 */
export async function fetchPlaylistIfWhole(
  endpoint: string,
  key: string,
): Promise<ParsedPlaylist | undefined> {
  let text: string;
  try {
    const response = await fetch(`${endpoint}/${TEST_BUCKET}/${key}`, {
      signal: AbortSignal.timeout(300),
    });
    if (response.status !== 200) return undefined;
    text = await response.text();
  } catch {
    return undefined;
  }
  const playlist = parsePlaylist(text);
  const whole = text.endsWith('\n') && playlist.uris.every((uri) => /\.(?:ts|m4s)$/.test(uri));
  return whole ? playlist : undefined;
}

/** Whether an object exists on the test server (HEAD reads only its metadata). */
export async function objectExists(endpoint: string, key: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/${TEST_BUCKET}/${key}`, { method: 'HEAD' });
  return response.status === 200;
}

/** Resolves once `check` returns true; rejects after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
