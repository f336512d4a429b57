import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '@hearth/server-common';
import { HlsPublisher, type HlsPublisherOptions, type PublishedObject } from '../src/hls-publisher';
import type { ObjectStorage } from '../src/storage/object-storage';
import type { FailedInfo, RetryInfo, SlowUploadInfo } from '../src/upload-queue';
import {
  SegmentSource,
  fetchObject,
  fetchPlaylistIfWhole,
  objectExists,
  parsePlaylist,
  s3StorageFor,
  silentLogger,
  sleep,
  testMasterPlaylist,
  testRenditions,
  waitFor,
} from './support/publisher-fixtures';
import { MemoryStorage } from './support/publisher-memory-storage';
import { TestS3Server } from './support/s3rver';

const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
const LIVE_PLAYLIST_CACHE = 'public, max-age=1';
const SEGMENT_CACHE = 'public, max-age=31536000, immutable';

let publisher: HlsPublisher | undefined;
let source: SegmentSource | undefined;
let server: TestS3Server | undefined;

function createPublisher(
  storage: ObjectStorage,
  overrides: Partial<HlsPublisherOptions> = {},
): HlsPublisher {
  const renditions = overrides.renditions ?? testRenditions('a', 'b');
  publisher = new HlsPublisher({
    storage,
    prefix: 'live/c',
    streamId: 's1',
    renditions,
    masterPlaylist: testMasterPlaylist(renditions),
    logger: silentLogger,
    ...overrides,
  });
  // Every rendition's first ffmpeg run has its init segment before any segment.
  for (const { name } of renditions) publisher.addInit(name, 0, Buffer.from(`init of ${name}`));
  return publisher;
}

function collect<T>(subscribe: (listener: (value: T) => void) => void): T[] {
  const values: T[] = [];
  subscribe((value) => values.push(value));
  return values;
}

function segmentKeys(rendition: string, from: number, to: number): string[] {
  return Array.from(
    { length: to - from + 1 },
    (_, index) => `live/c/${rendition}/s1-${from + index}.m4s`,
  );
}

function uris(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, index) => `s1-${from + index}.m4s`);
}

afterEach(async () => {
  publisher?.abort();
  publisher = undefined;
  source?.remove();
  source = undefined;
  await server?.close();
  server = undefined;
});

describe('HlsPublisher on s3rver', () => {
  it('addSegment() x20 for two renditions, then end(), publishes master and sliding playlists with the right headers, deletes old segments and local files', async () => {
    server = await TestS3Server.start();
    const storage = s3StorageFor(server);
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      liveWindowSegments: 6,
      retainSegments: 8,
      deleteBatchSize: 3,
    });
    const order: string[] = [];
    hls.events.on('live', () => order.push('live'));
    hls.events.on('ended', () => order.push('ended'));
    const uploaded = collect<PublishedObject>((listener) => hls.events.on('uploaded', listener));
    const errors = collect<FailedInfo>((listener) => hls.events.on('error', listener));

    for (let index = 0; index < 20; index++) {
      hls.addSegment(source.next('a'));
      hls.addSegment(source.next('b'));
    }
    await hls.end();
    storage.close();
    const endpoint = server.endpoint;

    expect(order).toEqual(['live', 'ended']);
    expect(errors).toEqual([]);
    expect(await fetchObject(endpoint, 'live/c/master.m3u8')).toEqual({
      status: 200,
      contentType: PLAYLIST_TYPE,
      cacheControl: 'no-cache',
      text: testMasterPlaylist(testRenditions('a', 'b')),
    });
    for (const rendition of ['a', 'b']) {
      const playlist = await fetchObject(endpoint, `live/c/${rendition}/index.m3u8`);
      expect(playlist).toMatchObject({
        status: 200,
        contentType: PLAYLIST_TYPE,
        cacheControl: LIVE_PLAYLIST_CACHE,
      });
      expect(parsePlaylist(playlist.text)).toEqual({
        targetDuration: 2,
        mediaSequence: 14,
        discontinuitySequence: 0,
        playlistType: undefined,
        uris: uris(14, 19),
        discontinuities: [],
        ended: true,
      });
      // Program date times advance by the segment duration from the source's start.
      expect(playlist.text).toContain(
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:28.000Z\n#EXTINF:2.000,\ns1-14.m4s',
      );
      expect(await storage.list(`live/c/${rendition}/`)).toEqual(
        [
          ...segmentKeys(rendition, 12, 19),
          `live/c/${rendition}/index.m3u8`,
          `live/c/${rendition}/s1-init-0.mp4`,
        ].sort(),
      );
      const segment = await fetchObject(endpoint, `live/c/${rendition}/s1-19.m4s`);
      expect(segment).toMatchObject({
        status: 200,
        contentType: 'video/iso.segment',
        cacheControl: SEGMENT_CACHE,
      });
      expect(segment.text).toContain(`${rendition} segment 19\n`);
    }
    expect(source.remaining()).toEqual([]);
    expect(uploaded.filter((object) => object.kind === 'segment')).toHaveLength(40);
    expect(uploaded.filter((object) => object.kind === 'master')).toHaveLength(1);
    expect(uploaded.every((object) => object.ms > 0 && object.latencyMs >= object.ms)).toBe(true);
  });

  it('end() with keepVod publishes vod.m3u8 listing every segment and deletes none', async () => {
    server = await TestS3Server.start();
    const storage = s3StorageFor(server);
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      liveWindowSegments: 3,
      retainSegments: 3,
      deleteBatchSize: 1,
      keepVod: true,
    });
    for (let index = 0; index < 10; index++) hls.addSegment(source.next('a'));
    await hls.end();
    storage.close();

    const vod = await fetchObject(server.endpoint, 'live/c/a/vod.m3u8');
    expect(vod).toMatchObject({ status: 200, contentType: PLAYLIST_TYPE });
    expect(parsePlaylist(vod.text)).toEqual({
      targetDuration: 2,
      mediaSequence: 0,
      discontinuitySequence: 0,
      playlistType: 'VOD',
      uris: uris(0, 9),
      discontinuities: [],
      ended: true,
    });
    const live = parsePlaylist((await fetchObject(server.endpoint, 'live/c/a/index.m3u8')).text);
    expect(live).toMatchObject({ mediaSequence: 7, uris: uris(7, 9), ended: true });
    expect(await storage.list('live/c/a/')).toEqual(
      [
        ...segmentKeys('a', 0, 9),
        'live/c/a/index.m3u8',
        'live/c/a/s1-init-0.mp4',
        'live/c/a/vod.m3u8',
      ].sort(),
    );
  });

  it('an outage longer than the spool holds: the oldest waiting segments are dropped and counted, the rest upload after, and the playlists stay valid', async () => {
    server = await TestS3Server.start();
    const s3 = server;
    const storage = s3StorageFor(s3);
    const segmentBytes = 32 * 1024;
    source = new SegmentSource({ bytes: segmentBytes });
    const spool = 4 * segmentBytes;
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      liveWindowSegments: 6,
      retainSegments: 100,
      keepVod: true,
      maxBacklogBytes: spool,
      concurrency: 1,
      // A first retry waits longer than the outage below lasts, so no old segment is being sent
      // again (which would keep it from being dropped) when the spool overflows.
      retry: { baseDelayMs: 2000, maxDelayMs: 4000 },
    });
    const dropped = collect<{ key: string }>((listener) => hls.events.on('dropped', listener));
    const errors = collect<FailedInfo>((listener) => hls.events.on('error', listener));
    hls.addSegment(source.next('a'));
    await waitFor(() => hls.backlogBytes === 0, 5000, 'the first segment uploaded');
    await s3.stop();
    const files: string[] = [];
    let peakBacklog = 0;
    for (let index = 0; index < 12; index++) {
      const segment = source.next('a');
      files.push(segment.localPath);
      hls.addSegment(segment);
      peakBacklog = Math.max(peakBacklog, hls.backlogBytes);
      await sleep(20);
    }
    // At most the spool, plus the one upload that may be running when the spool is full.
    expect(peakBacklog).toBeLessThanOrEqual(spool + segmentBytes);
    expect(dropped.length).toBeGreaterThanOrEqual(7);
    expect(dropped.length).toBeLessThanOrEqual(8);
    const droppedUris = dropped.map(({ key }) => key.split('/').at(-1)!);
    // The oldest go first: what is dropped is the front of the outage.
    expect(droppedUris).toEqual(uris(1, dropped.length));
    for (const uri of droppedUris) {
      const index = Number(uri.match(/s1-(\d+)\.m4s/)![1]);
      expect(fs.existsSync(files[index - 1]!)).toBe(false);
    }
    await s3.resume();
    await hls.end();
    storage.close();
    expect(errors).toEqual([]);
    const endpoint = s3.endpoint;
    const vod = parsePlaylist((await fetchObject(endpoint, 'live/c/a/vod.m3u8')).text);
    const kept = [
      0,
      ...Array.from({ length: 12 - dropped.length }, (_, i) => dropped.length + 1 + i),
    ];
    expect(vod.uris).toEqual(kept.map((index) => `s1-${index}.m4s`));
    // The jump over the dropped segments is marked, so players reset instead of stalling.
    expect(vod.discontinuities).toEqual([`s1-${dropped.length + 1}.m4s`]);
    for (const uri of vod.uris) expect(await objectExists(endpoint, `live/c/a/${uri}`)).toBe(true);
    for (const uri of droppedUris) {
      expect(await objectExists(endpoint, `live/c/a/${uri}`)).toBe(false);
    }
    const live = parsePlaylist((await fetchObject(endpoint, 'live/c/a/index.m3u8')).text);
    expect(live.ended).toBe(true);
    expect(live.uris).toEqual(vod.uris.slice(-6));
  });

  it('addSegment() through a 10 s storage outage loses no segment, keeps playlists consistent, and reports slow uploads', async () => {
    server = await TestS3Server.start();
    const s3 = server;
    const endpoint = s3.endpoint;
    const storage = s3StorageFor(s3);
    source = new SegmentSource({ bytes: 32 * 1024 });
    const hls = createPublisher(storage, { liveWindowSegments: 6, retainSegments: 100 });
    const retries = collect<RetryInfo>((listener) => hls.events.on('retry', listener));
    const slow = collect<SlowUploadInfo>((listener) => hls.events.on('slowUpload', listener));
    const errors = collect<FailedInfo>((listener) => hls.events.on('error', listener));
    const uploaded = collect<PublishedObject>((listener) => hls.events.on('uploaded', listener));

    // A player's view: every playlist read must only list segments that are there.
    const missing: string[] = [];
    let playlistsSeen = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const playlist = await fetchPlaylistIfWhole(endpoint, 'live/c/a/index.m3u8');
        for (const uri of playlist?.uris ?? []) {
          // A HEAD that cannot connect (the outage) says nothing; only a 404 is a miss.
          const exists = await objectExists(endpoint, `live/c/a/${uri}`).catch(() => undefined);
          if (exists === false) missing.push(uri);
        }
        if (playlist) playlistsSeen += 1;
        await sleep(50);
      }
    })();

    const tick = async () => {
      hls.addSegment(source!.next('a', { durationSec: 0.5 }));
      hls.addSegment(source!.next('b', { durationSec: 0.5 }));
      await sleep(500);
    };
    for (let index = 0; index < 6; index++) await tick();
    await s3.stop();
    for (let index = 0; index < 20; index++) await tick();
    const queuedDuringOutage = hls.queueDepth;
    await s3.resume();
    for (let index = 0; index < 4; index++) await tick();
    await hls.end();
    polling = false;
    await poller;
    storage.close();

    expect(errors).toEqual([]);
    expect(queuedDuringOutage).toBeGreaterThanOrEqual(40);
    expect(retries.length).toBeGreaterThan(0);
    expect(retries.every((retry) => retry.error.transient)).toBe(true);
    expect(slow.some((info) => info.kind === 'segment' && info.elapsedMs > 500)).toBe(true);
    expect(uploaded.filter((object) => object.kind === 'segment')).toHaveLength(60);
    for (const rendition of ['a', 'b']) {
      expect(await storage.list(`live/c/${rendition}/`)).toEqual(
        [
          ...segmentKeys(rendition, 0, 29),
          `live/c/${rendition}/index.m3u8`,
          `live/c/${rendition}/s1-init-0.mp4`,
        ].sort(),
      );
      const final = parsePlaylist(
        (await fetchObject(endpoint, `live/c/${rendition}/index.m3u8`)).text,
      );
      expect(final).toMatchObject({ mediaSequence: 24, uris: uris(24, 29), ended: true });
    }
    expect(source.remaining()).toEqual([]);
    expect(playlistsSeen).toBeGreaterThan(3);
    expect(missing).toEqual([]);
  }, 45_000);
});

describe('HlsPublisher ordering and failures', () => {
  // Waits until the newest uploaded version of a playlist lists `uri`, and returns it parsed.
  async function playlistListing(storage: MemoryStorage, key: string, uri: string) {
    await waitFor(
      () => (storage.putsOf(key).at(-1) ?? '').includes(uri),
      2000,
      `${key} with ${uri}`,
    );
    return parsePlaylist(storage.putsOf(key).at(-1)!);
  }

  it('addSegment() with a discontinuity flags it while listed, then counts it in DISCONTINUITY-SEQUENCE', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      liveWindowSegments: 3,
    });
    for (let index = 0; index < 4; index++) {
      hls.addSegment(source.next('a', { discontinuity: index === 2 }));
    }
    const listed = await playlistListing(storage, 'live/c/a/index.m3u8', 's1-3.m4s');
    expect(listed).toMatchObject({
      mediaSequence: 1,
      discontinuitySequence: 0,
      uris: uris(1, 3),
      discontinuities: ['s1-2.m4s'],
    });
    hls.addSegment(source.next('a'));
    hls.addSegment(source.next('a'));
    await hls.end();

    expect(parsePlaylist(storage.putsOf('live/c/a/index.m3u8').at(-1)!)).toMatchObject({
      mediaSequence: 3,
      discontinuitySequence: 1,
      uris: uris(3, 5),
      discontinuities: [],
      ended: true,
    });
  });

  it('the master playlist is uploaded only after every rendition has a playlist up', async () => {
    const storage = new MemoryStorage();
    const holdB = storage.hold(/\/b\//);
    source = new SegmentSource();
    const hls = createPublisher(storage);
    let live = 0;
    hls.events.on('live', () => (live += 1));
    hls.addSegment(source.next('a'));
    hls.addSegment(source.next('b'));
    await waitFor(() => storage.putsOf('live/c/a/index.m3u8').length > 0, 2000, 'playlist a');
    await sleep(30);
    expect(storage.indexOf('put-start', 'live/c/master.m3u8')).toBe(-1);
    expect(live).toBe(0);
    holdB.release();
    await waitFor(() => live === 1, 2000, 'live');

    const masterStart = storage.indexOf('put-start', 'live/c/master.m3u8');
    expect(masterStart).toBeGreaterThan(storage.indexOf('put-end', 'live/c/a/index.m3u8'));
    expect(masterStart).toBeGreaterThan(storage.indexOf('put-end', 'live/c/b/index.m3u8'));
    expect(hls.live).toBe(true);
  });

  it('replaceMasterPlaylist() after the master is up uploads the new ladder', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage);
    hls.addSegment(source.next('a'));
    hls.addSegment(source.next('b'));
    await waitFor(() => hls.live, 2000, 'live');
    const reduced = testMasterPlaylist(testRenditions('b'));
    hls.replaceMasterPlaylist(reduced);
    await hls.end();
    expect(storage.putsOf('live/c/master.m3u8')).toHaveLength(2);
    expect(storage.objects.get('live/c/master.m3u8')!.body.toString()).toBe(reduced);
  });

  it('old segments are deleted in batches, each after a playlist that no longer lists them is up', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      liveWindowSegments: 2,
      retainSegments: 4,
      deleteBatchSize: 2,
    });
    for (let index = 0; index < 9; index++) hls.addSegment(source.next('a'));
    await hls.end();

    expect(storage.deletedBatches).toEqual([
      segmentKeys('a', 0, 1),
      segmentKeys('a', 2, 3),
      segmentKeys('a', 4, 4),
    ]);
    for (const batch of storage.deletedBatches) {
      const deletedAt = storage.indexOf('delete', batch.join(' '));
      const playlistBefore = storage.log
        .slice(0, deletedAt)
        .findLast((entry) => entry.op === 'put-end' && entry.key === 'live/c/a/index.m3u8');
      const listed = parsePlaylist(playlistBefore?.body ?? '').uris;
      for (const key of batch) {
        expect(storage.indexOf('put-end', key)).toBeLessThan(deletedAt);
        expect(listed).not.toContain(key.slice('live/c/a/'.length));
      }
    }
    expect(await storage.list('live/c/a/s1-')).toEqual(
      [...segmentKeys('a', 5, 8), 'live/c/a/s1-init-0.mp4'].sort(),
    );
  });

  it('a segment that fails permanently is left out of every playlist, the next one is flagged, and "error" is emitted', async () => {
    const storage = new MemoryStorage();
    storage.fail('live/c/a/s1-1.m4s', 1, false);
    source = new SegmentSource();
    const hls = createPublisher(storage, { renditions: testRenditions('a') });
    const errors = collect<FailedInfo>((listener) => hls.events.on('error', listener));
    const segments = Array.from({ length: 4 }, () => source!.next('a'));
    for (const segment of segments) hls.addSegment(segment);
    await hls.end();

    expect(errors).toEqual([
      expect.objectContaining({
        key: 'live/c/a/s1-1.m4s',
        kind: 'segment',
        reason: 'permanent-error',
      }),
    ]);
    for (const version of storage.putsOf('live/c/a/index.m3u8')) {
      expect(parsePlaylist(version).uris).not.toContain('s1-1.m4s');
    }
    expect(parsePlaylist(storage.putsOf('live/c/a/index.m3u8').at(-1)!)).toMatchObject({
      uris: ['s1-0.m4s', 's1-2.m4s', 's1-3.m4s'],
      discontinuities: ['s1-2.m4s'],
      ended: true,
    });
    expect(fs.existsSync(segments[1]!.localPath)).toBe(false);
    expect(source.remaining()).toEqual([]);
  });

  it('deleteLocalFiles: false keeps the local segment files after upload', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      deleteLocalFiles: false,
    });
    hls.addSegment(source.next('a'));
    hls.addSegment(source.next('a'));
    await hls.end();

    expect(storage.objects.has('live/c/a/s1-1.m4s')).toBe(true);
    expect(source.remaining()).toEqual(['a-0.m4s', 'a-1.m4s']);
  });

  it('end() called twice returns one promise and emits "ended" once', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage, { renditions: testRenditions('a') });
    let ended = 0;
    hls.events.on('ended', () => (ended += 1));
    hls.addSegment(source.next('a'));
    const first = hls.end();
    const second = hls.end();
    expect(second).toBe(first);
    await first;

    expect(ended).toBe(1);
    expect(hls.queueDepth).toBe(0);
  });

  it('abort() while storage keeps failing makes end() reject "unavailable" and leaves local files', async () => {
    const storage = new MemoryStorage();
    storage.fail(/./, 1000, true);
    source = new SegmentSource();
    const hls = createPublisher(storage, {
      renditions: testRenditions('a'),
      retry: { baseDelayMs: 10, maxDelayMs: 20 },
    });
    const segment = source.next('a');
    hls.addSegment(segment);
    const ending = hls.end();
    await sleep(50);
    hls.abort();
    hls.abort();

    await expect(ending).rejects.toThrow(AppError);
    await expect(ending).rejects.toMatchObject({ code: 'unavailable' });
    expect(fs.existsSync(segment.localPath)).toBe(true);
    expect(() => hls.addSegment(source!.next('a'))).toThrow(/aborted/);
  });

  it('addSegment() after end() throws "unavailable", and for an unknown rendition throws a TypeError', async () => {
    const storage = new MemoryStorage();
    source = new SegmentSource();
    const hls = createPublisher(storage, { renditions: testRenditions('a') });
    expect(() => hls.addSegment(source!.next('z'))).toThrow(TypeError);
    expect(() => hls.addSegment({ ...source!.next('a'), durationSec: 0 })).toThrow(/durationSec/);
    await hls.end();

    expect(() => hls.addSegment(source!.next('a'))).toThrow(
      expect.objectContaining({ code: 'unavailable', message: 'the publisher has ended' }),
    );
  });

  it.each<{ name: string; options: Partial<HlsPublisherOptions>; message: RegExp }>([
    {
      name: 'retainSegments below the live window',
      options: { liveWindowSegments: 6, retainSegments: 5 },
      message: /retainSegments/,
    },
    { name: 'a prefix with a trailing slash', options: { prefix: 'live/c/' }, message: /prefix/ },
    { name: 'a stream id with a slash', options: { streamId: 'a/b' }, message: /streamId/ },
    {
      name: 'duplicate renditions',
      options: { renditions: testRenditions('a', 'a') },
      message: /duplicate rendition a/,
    },
    { name: 'no rendition', options: { renditions: [] }, message: /at least one rendition/ },
    {
      name: 'a live window of 0',
      options: { liveWindowSegments: 0 },
      message: /liveWindowSegments/,
    },
  ])('new HlsPublisher() with $name throws a TypeError', ({ options, message }) => {
    expect(() => createPublisher(new MemoryStorage(), options)).toThrow(TypeError);
    expect(() => createPublisher(new MemoryStorage(), options)).toThrow(message);
  });
});
