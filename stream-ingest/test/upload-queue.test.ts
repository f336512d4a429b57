import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '@hearth/server-common';
import {
  UploadQueue,
  type FailedInfo,
  type RetryInfo,
  type SlowUploadInfo,
  type StalledInfo,
  type UploadQueueOptions,
  type UploadedInfo,
} from '../src/upload-queue';
import {
  fetchObject,
  fetchPlaylistIfWhole,
  objectExists,
  parsePlaylist,
  s3StorageFor,
  silentLogger,
  sleep,
} from './support/publisher-fixtures';
import { MemoryStorage } from './support/publisher-memory-storage';
import { S3Proxy } from './support/publisher-s3-proxy';
import { TestS3Server } from './support/s3rver';

const segmentMeta = { contentType: 'video/mp2t', cacheControl: 'public, max-age=60, immutable' };
const playlistMeta = { contentType: 'application/vnd.apple.mpegurl', cacheControl: 'no-cache' };

let queue: UploadQueue | undefined;

function createQueue(
  storage: MemoryStorage,
  options: Partial<Omit<UploadQueueOptions, 'storage'>> = {},
): UploadQueue {
  queue = new UploadQueue({ storage, logger: silentLogger, ...options });
  return queue;
}

function collect<T>(subscribe: (listener: (value: T) => void) => void): T[] {
  const values: T[] = [];
  subscribe((value) => values.push(value));
  return values;
}

afterEach(() => {
  queue?.abort();
  queue = undefined;
});

describe('UploadQueue ordering', () => {
  it('put() of a playlist that depends on segments starts it only after every segment succeeded', async () => {
    const storage = new MemoryStorage();
    storage.putDelayMs = 30;
    const uploads = createQueue(storage);
    const segments = ['s/0.ts', 's/1.ts', 's/2.ts'].map((key) =>
      uploads.put({ key, kind: 'segment', body: key, meta: segmentMeta }),
    );
    uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'playlist',
      meta: playlistMeta,
      dependsOn: segments,
    });
    await uploads.drain();

    const playlistStart = storage.indexOf('put-start', 's/index.m3u8');
    expect(playlistStart).toBeGreaterThan(0);
    for (const key of ['s/0.ts', 's/1.ts', 's/2.ts']) {
      expect(storage.indexOf('put-end', key)).toBeLessThan(playlistStart);
    }
  });

  it('put() of a playlist waits through the transient retries of its segment', async () => {
    const storage = new MemoryStorage();
    storage.fail('s/0.ts', 2, true);
    const uploads = createQueue(storage, { retry: { baseDelayMs: 10 } });
    const segment = uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'playlist',
      meta: playlistMeta,
      dependsOn: [segment],
    });
    await uploads.drain();

    expect(storage.log.filter((entry) => entry.op === 'put-error')).toHaveLength(2);
    expect(storage.indexOf('put-start', 's/index.m3u8')).toBeGreaterThan(
      storage.indexOf('put-end', 's/0.ts'),
    );
  });

  it('put() of versions of one key waiting on the same segment uploads only the newest', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/0.ts');
    const uploads = createQueue(storage);
    const uploaded = collect<UploadedInfo>((listener) => uploads.events.on('uploaded', listener));
    const segment = uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    const versions = ['v1', 'v2', 'v3'].map((body) =>
      uploads.put({
        key: 's/index.m3u8',
        kind: 'playlist',
        body,
        meta: playlistMeta,
        dependsOn: [segment],
      }),
    );
    // A delete that needs the first version counts it as done once a newer one is up.
    uploads.delete({ keys: ['s/old.ts'], dependsOn: [versions[0]!] });
    hold.release();
    await uploads.drain();

    expect(storage.putsOf('s/index.m3u8')).toEqual(['v3']);
    expect(uploaded.map((info) => info.id)).toEqual([segment, versions[2], expect.any(Number)]);
    expect(storage.deletedBatches).toEqual([['s/old.ts']]);
    expect(storage.indexOf('delete', 's/old.ts')).toBeGreaterThan(
      storage.indexOf('put-end', 's/index.m3u8'),
    );
  });

  it('put() of a newer version waiting on a slow segment does not hold back an older ready one', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/1.ts');
    const uploads = createQueue(storage);
    const first = uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'v0',
      meta: playlistMeta,
      dependsOn: [first],
    });
    const second = uploads.put({ key: 's/1.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'v1',
      meta: playlistMeta,
      dependsOn: [first, second],
    });
    await sleep(30);
    expect(storage.putsOf('s/index.m3u8')).toEqual(['v0']);
    hold.release();
    await uploads.drain();

    expect(storage.putsOf('s/index.m3u8')).toEqual(['v0', 'v1']);
  });

  it('put() for a key whose job is running uploads the new content after it, never alongside', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/index.m3u8');
    const uploads = createQueue(storage);
    uploads.put({ key: 's/index.m3u8', kind: 'playlist', body: 'v1', meta: playlistMeta });
    uploads.put({ key: 's/index.m3u8', kind: 'playlist', body: 'v2', meta: playlistMeta });
    await sleep(20);
    expect(storage.log.filter((entry) => entry.op === 'put-start')).toHaveLength(1);
    hold.release();
    await uploads.drain();

    expect(storage.putsOf('s/index.m3u8')).toEqual(['v1', 'v2']);
    expect(storage.maxInFlight).toBe(1);
  });

  it('put() of a version that depends on an older version of its key, through another job, does not deadlock', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/0.ts');
    const uploads = createQueue(storage);
    const segment = uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    const v1 = uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'v1',
      meta: playlistMeta,
      dependsOn: [segment],
    });
    const master = uploads.put({
      key: 'master.m3u8',
      kind: 'master',
      body: 'master',
      meta: playlistMeta,
      dependsOn: [v1],
    });
    uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'v2',
      meta: playlistMeta,
      dependsOn: [master],
    });
    hold.release();
    await uploads.drain();

    expect(storage.putsOf('s/index.m3u8')).toEqual(['v1', 'v2']);
  });

  it('delete() of a key waits for the running put of that key', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/0.ts');
    const uploads = createQueue(storage);
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    uploads.delete({ keys: ['s/0.ts'] });
    await sleep(20);
    expect(storage.deletedBatches).toEqual([]);
    hold.release();
    await uploads.drain();

    expect(storage.deletedBatches).toEqual([['s/0.ts']]);
    expect(storage.objects.has('s/0.ts')).toBe(false);
  });

  it('concurrency caps the uploads in flight', async () => {
    const storage = new MemoryStorage();
    storage.putDelayMs = 20;
    const uploads = createQueue(storage, { concurrency: 3 });
    for (let index = 0; index < 12; index++) {
      uploads.put({ key: `s/${index}.ts`, kind: 'segment', body: 'x', meta: segmentMeta });
    }
    await uploads.drain();

    expect(storage.maxInFlight).toBe(3);
    expect(storage.objects.size).toBe(12);
  });
});

describe('UploadQueue retries and failures', () => {
  it('a transient failure is retried with doubling, jittered delays until it succeeds', async () => {
    const storage = new MemoryStorage();
    storage.fail('s/0.ts', 4, true);
    const uploads = createQueue(storage, {
      retry: { baseDelayMs: 40, maxDelayMs: 1000, attemptBudget: 10 },
    });
    const retries = collect<RetryInfo>((listener) => uploads.events.on('retry', listener));
    const uploaded = collect<UploadedInfo>((listener) => uploads.events.on('uploaded', listener));
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    await uploads.drain();

    expect(retries.map((retry) => retry.attempt)).toEqual([1, 2, 3, 4]);
    retries.forEach((retry, index) => {
      const ceiling = 40 * 2 ** index;
      expect(retry.delayMs).toBeGreaterThanOrEqual(ceiling / 2);
      expect(retry.delayMs).toBeLessThanOrEqual(ceiling);
      expect(retry.error.transient).toBe(true);
    });
    expect(uploaded).toHaveLength(1);
    expect(uploaded[0]!.attempts).toBe(5);
    const waited = retries.reduce((sum, retry) => sum + retry.delayMs, 0);
    expect(uploaded[0]!.latencyMs).toBeGreaterThanOrEqual(waited - 5);
  });

  it('a job past its attempt budget is reported stalled once and keeps retrying at the longest delay', async () => {
    const storage = new MemoryStorage();
    storage.fail('s/0.ts', 6, true);
    const uploads = createQueue(storage, {
      retry: { baseDelayMs: 10, maxDelayMs: 40, attemptBudget: 3 },
    });
    const retries = collect<RetryInfo>((listener) => uploads.events.on('retry', listener));
    const stalled = collect<StalledInfo>((listener) => uploads.events.on('stalled', listener));
    const uploaded = collect<UploadedInfo>((listener) => uploads.events.on('uploaded', listener));
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    await uploads.drain();

    expect(stalled).toEqual([
      expect.objectContaining({ key: 's/0.ts', kind: 'segment', attempts: 3 }),
    ]);
    expect(retries).toHaveLength(6);
    for (const retry of retries.slice(2)) {
      expect(retry.delayMs).toBeGreaterThanOrEqual(20);
      expect(retry.delayMs).toBeLessThanOrEqual(40);
    }
    expect(uploaded[0]!.attempts).toBe(7);
    expect(storage.objects.has('s/0.ts')).toBe(true);
  });

  it('a permanent error fails the job at once, fails the puts that depend on it, and lets deletes run', async () => {
    const storage = new MemoryStorage();
    storage.fail('s/0.ts', 1, false);
    const uploads = createQueue(storage);
    const failed = collect<FailedInfo>((listener) => uploads.events.on('failed', listener));
    const segment = uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    const playlist = uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'playlist',
      meta: playlistMeta,
      dependsOn: [segment],
    });
    uploads.delete({ keys: ['s/old.ts'], dependsOn: [segment] });
    await uploads.drain();

    expect(failed).toEqual([
      expect.objectContaining({ id: segment, kind: 'segment', reason: 'permanent-error' }),
      expect.objectContaining({ id: playlist, kind: 'playlist', reason: 'dependency-failed' }),
    ]);
    expect(failed[0]!.error.transient).toBe(false);
    expect(storage.log.filter((entry) => entry.key === 's/0.ts')).toHaveLength(2);
    expect(storage.indexOf('put-start', 's/index.m3u8')).toBe(-1);
    expect(storage.deletedBatches).toEqual([['s/old.ts']]);
  });

  it('a job still unfinished after expectedMs emits slowUpload once', async () => {
    const storage = new MemoryStorage();
    storage.putDelayMs = 120;
    const uploads = createQueue(storage);
    const slow = collect<SlowUploadInfo>((listener) => uploads.events.on('slowUpload', listener));
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta, expectedMs: 30 });
    uploads.put({ key: 's/1.ts', kind: 'segment', body: 'x', meta: segmentMeta, expectedMs: 5000 });
    await uploads.drain();

    expect(slow).toEqual([
      expect.objectContaining({ key: 's/0.ts', kind: 'segment', expectedMs: 30 }),
    ]);
    expect(slow[0]!.elapsedMs).toBeGreaterThanOrEqual(29);
  });
});

describe('UploadQueue lifecycle', () => {
  it('drain() resolves only once the jobs queued before it finished', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold('s/0.ts');
    const uploads = createQueue(storage);
    await uploads.drain();
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    let drained = false;
    const drain = uploads.drain().then(() => (drained = true));
    await sleep(30);
    expect(drained).toBe(false);
    hold.release();
    await drain;

    expect(drained).toBe(true);
    expect(uploads.size).toBe(0);
  });

  it('abort() rejects a pending drain(), and put() afterwards throws "unavailable"', async () => {
    const storage = new MemoryStorage();
    storage.hold('s/0.ts');
    const uploads = createQueue(storage);
    uploads.put({ key: 's/0.ts', kind: 'segment', body: 'x', meta: segmentMeta });
    const drain = uploads.drain();
    uploads.abort();
    uploads.abort();

    await expect(drain).rejects.toThrow(AppError);
    expect(uploads.closed).toBe(true);
    expect(uploads.size).toBe(0);
    expect(() =>
      uploads.put({ key: 's/1.ts', kind: 'segment', body: 'x', meta: segmentMeta }),
    ).toThrow(expect.objectContaining({ code: 'unavailable' }));
    await expect(uploads.drain()).rejects.toThrow(/aborted/);
  });

  it('depth events follow the number of unfinished jobs', async () => {
    const storage = new MemoryStorage();
    const hold = storage.hold(/\.ts$/);
    const uploads = createQueue(storage);
    const depths = collect<number>((listener) => uploads.events.on('depth', listener));
    for (let index = 0; index < 3; index++) {
      uploads.put({ key: `s/${index}.ts`, kind: 'segment', body: 'x', meta: segmentMeta });
    }
    expect(depths).toEqual([1, 2, 3]);
    hold.release();
    await uploads.drain();

    expect(depths).toEqual([1, 2, 3, 2, 1, 0]);
  });

  it.each([
    {
      call: 'put() with an unknown dependency',
      run: (q: UploadQueue) =>
        q.put({ key: 'k', kind: 'playlist', body: '', meta: playlistMeta, dependsOn: [99] }),
      message: /unknown dependency job id 99/,
    },
    {
      call: 'put() with an empty key',
      run: (q: UploadQueue) => q.put({ key: '', kind: 'segment', body: '', meta: segmentMeta }),
      message: /non-empty key/,
    },
    {
      call: 'delete() without keys',
      run: (q: UploadQueue) => q.delete({ keys: [] }),
      message: /at least one key/,
    },
  ])('$call throws a TypeError', ({ run, message }) => {
    const uploads = createQueue(new MemoryStorage());
    expect(() => run(uploads)).toThrow(TypeError);
    expect(() => run(uploads)).toThrow(message);
  });
});

describe('UploadQueue on s3rver', () => {
  let server: TestS3Server | undefined;

  let proxy: S3Proxy | undefined;

  afterEach(async () => {
    await proxy?.close();
    await server?.close();
    proxy = undefined;
    server = undefined;
  });

  it('a playlist polled from s3rver never lists a segment that is not stored yet', async () => {
    server = await TestS3Server.start();
    proxy = await S3Proxy.start(server.endpoint);
    // Segments reach the bucket 150 ms after their request starts, playlists at once: without the
    // dependency, each new playlist would be visible before its newest segment for that long.
    proxy.slowPuts = { path: /\.ts$/, delayMs: 150 };
    const storage = s3StorageFor(proxy);
    const uploads = new UploadQueue({ storage, logger: silentLogger });
    queue = uploads;
    const endpoint = server.endpoint;
    const missing: string[] = [];
    let playlistsSeen = 0;
    let publishing = true;
    const poller = (async () => {
      while (publishing) {
        const playlist = await fetchPlaylistIfWhole(endpoint, 'live/c/a/index.m3u8');
        if (playlist) {
          playlistsSeen += 1;
          for (const uri of playlist.uris) {
            if (!(await objectExists(endpoint, `live/c/a/${uri}`))) missing.push(uri);
          }
        }
        await sleep(5);
      }
    })();

    const body = Buffer.alloc(64 * 1024, 0x47);
    const ids: number[] = [];
    for (let index = 0; index < 20; index++) {
      ids.push(
        uploads.put({ key: `live/c/a/${index}.ts`, kind: 'segment', body, meta: segmentMeta }),
      );
      const window = Array.from(
        { length: Math.min(4, index + 1) },
        (_, offset) => index - offset,
      ).reverse();
      uploads.put({
        key: 'live/c/a/index.m3u8',
        kind: 'playlist',
        body: `#EXTM3U\n${window.map((n) => `#EXTINF:2.000,\n${n}.ts`).join('\n')}\n`,
        meta: playlistMeta,
        dependsOn: window.map((n) => ids[n]!),
      });
      await sleep(100);
    }
    await uploads.drain();
    publishing = false;
    await poller;
    storage.close();

    expect(playlistsSeen).toBeGreaterThan(5);
    expect(missing).toEqual([]);
    expect(parsePlaylist((await fetchObject(endpoint, 'live/c/a/index.m3u8')).text).uris).toEqual([
      '16.ts',
      '17.ts',
      '18.ts',
      '19.ts',
    ]);
  });
});

describe('UploadQueue drops', () => {
  it('drop() takes a waiting put out as "dropped", fails its dependents, and leaves a running put alone', async () => {
    const storage = new MemoryStorage();
    const held = storage.hold('s/0.ts');
    const uploads = createQueue(storage, { concurrency: 1 });
    const failed = collect<FailedInfo>((listener) => uploads.events.on('failed', listener));
    const running = uploads.put({ key: 's/0.ts', kind: 'segment', body: '0', meta: segmentMeta });
    const waiting = uploads.put({ key: 's/1.ts', kind: 'segment', body: '1', meta: segmentMeta });
    const playlist = uploads.put({
      key: 's/index.m3u8',
      kind: 'playlist',
      body: 'lists 0 and 1',
      meta: playlistMeta,
      dependsOn: [running, waiting],
    });
    await sleep(20);
    expect(uploads.drop(running)).toBe(false);
    expect(uploads.drop(waiting)).toBe(true);
    expect(uploads.drop(waiting)).toBe(false);
    held.release();
    await uploads.drain();
    expect(failed.map(({ id, reason }) => [id, reason])).toEqual([
      [waiting, 'dropped'],
      [playlist, 'dependency-failed'],
    ]);
    expect([...storage.objects.keys()]).toEqual(['s/0.ts']);
  });

  it('dropKey() drops every waiting version of one key (v2 was already superseded by v3) and nothing else', async () => {
    const storage = new MemoryStorage();
    const held = storage.hold(/./);
    const uploads = createQueue(storage, { concurrency: 1 });
    uploads.put({ key: 'other', kind: 'segment', body: 'x', meta: segmentMeta });
    for (const body of ['v1', 'v2', 'v3']) {
      uploads.put({ key: 'p.m3u8', kind: 'playlist', body, meta: playlistMeta });
    }
    await sleep(20);
    expect(uploads.dropKey('p.m3u8')).toBe(2);
    held.release();
    await uploads.drain();
    expect([...storage.objects.keys()]).toEqual(['other']);
  });
});

describe('UploadQueue memory while storage is away', () => {
  it('a waiting key keeps only its oldest and newest versions; what depended on a superseded one waits for the newest', async () => {
    const storage = new MemoryStorage();
    const held = storage.hold('s/0.ts');
    const uploads = createQueue(storage, { concurrency: 2 });
    const segment = uploads.put({ key: 's/0.ts', kind: 'segment', body: '0', meta: segmentMeta });
    const versions: number[] = [];
    for (let index = 1; index <= 10; index++) {
      versions.push(
        uploads.put({
          key: 's/index.m3u8',
          kind: 'playlist',
          body: `v${index}`,
          meta: playlistMeta,
          dependsOn: [segment],
        }),
      );
    }
    // The segment, and of ten playlist versions the first and the last.
    expect(uploads.size).toBe(3);
    uploads.delete({ keys: ['s/old.ts'], dependsOn: [versions[4]!] });
    held.release();
    await uploads.drain();
    expect(storage.putsOf('s/index.m3u8')).toEqual(['v10']);
    // The delete waited for the version that superseded the one it named.
    expect(storage.indexOf('delete', 's/old.ts')).toBeGreaterThan(
      storage.indexOf('put-end', 's/index.m3u8'),
    );
  });
});
