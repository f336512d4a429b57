import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalStorage } from '../src/storage/local-storage';
import { MAX_DELETE_BATCH, StorageError, batchKeys } from '../src/storage/object-storage';
import { S3Storage, classifyS3Error } from '../src/storage/s3-storage';
import { fetchObject, s3StorageFor } from './support/publisher-fixtures';
import { S3Proxy } from './support/publisher-s3-proxy';
import { TEST_BUCKET, TestS3Server } from './support/s3rver';

const tsMeta = { contentType: 'video/mp2t', cacheControl: 'public, max-age=31536000, immutable' };
const playlistMeta = { contentType: 'application/vnd.apple.mpegurl', cacheControl: 'no-cache' };

let tempDir: string;

beforeEach(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-storage-'));
});

afterEach(() => {
  fs.rmSync(tempDir, { recursive: true, force: true });
});

// Runs a call expected to fail and returns the StorageError it threw.
async function storageErrorOf(call: () => Promise<unknown>): Promise<StorageError> {
  const error = await call().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe('batchKeys()', () => {
  it.each([
    { count: 0, size: 1000, sizes: [] },
    { count: 1000, size: 1000, sizes: [1000] },
    { count: 2001, size: 1000, sizes: [1000, 1000, 1] },
    { count: 5, size: 2, sizes: [2, 2, 1] },
  ])('$count keys in batches of $size give batch sizes $sizes', ({ count, size, sizes }) => {
    const keys = Array.from({ length: count }, (_, index) => `k${index}`);
    const batches = batchKeys(keys, size);
    expect(batches.map((batch) => batch.length)).toEqual(sizes);
    expect(batches.flat()).toEqual(keys);
  });

  it('batchKeys() with a batch size of 0 throws a TypeError', () => {
    expect(() => batchKeys(['a'], 0)).toThrow(TypeError);
  });
});

describe('classifyS3Error()', () => {
  const sdkError = (name: string, httpStatusCode?: number) =>
    Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode } });

  it.each([
    { error: sdkError('SlowDown', 503), transient: true },
    { error: sdkError('InternalError', 500), transient: true },
    { error: sdkError('SomethingNew', 502), transient: true },
    { error: sdkError('TooManyRequestsException', 429), transient: true },
    { error: sdkError('TimeoutError'), transient: true },
    { error: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), transient: true },
    { error: sdkError('AccessDenied', 403), transient: false },
    { error: sdkError('NoSuchBucket', 404), transient: false },
    { error: sdkError('InvalidArgument', 400), transient: false },
    { error: new TypeError('bad input'), transient: false },
  ])('$error.name ($error.message) is transient: $transient', ({ error, transient }) => {
    const classified = classifyS3Error(error, 'k');
    expect(classified).toBeInstanceOf(StorageError);
    expect(classified.transient).toBe(transient);
    expect(classified.key).toBe('k');
    expect(classified.cause).toBe(error);
  });
});

describe('S3Storage on s3rver', () => {
  let server: TestS3Server;
  let proxy: S3Proxy | undefined;
  let storage: S3Storage;

  beforeEach(async () => {
    server = await TestS3Server.start();
    storage = s3StorageFor(server);
  });

  afterEach(async () => {
    storage.close();
    await proxy?.close();
    proxy = undefined;
    await server.close();
  });

  it('put() of a Buffer, a string and a file stores the bytes with Content-Type and Cache-Control', async () => {
    const file = path.join(tempDir, 'seg.ts');
    fs.writeFileSync(file, Buffer.alloc(3000, 0x47));
    await storage.put('live/c/a/0.ts', Buffer.from('buffer body'), tsMeta);
    await storage.put('live/c/a/index.m3u8', '#EXTM3U\n', playlistMeta);
    await storage.put('live/c/a/1.ts', { filePath: file }, tsMeta);

    expect(await fetchObject(server.endpoint, 'live/c/a/0.ts')).toEqual({
      status: 200,
      contentType: tsMeta.contentType,
      cacheControl: tsMeta.cacheControl,
      text: 'buffer body',
    });
    expect(await fetchObject(server.endpoint, 'live/c/a/index.m3u8')).toEqual({
      status: 200,
      contentType: playlistMeta.contentType,
      cacheControl: playlistMeta.cacheControl,
      text: '#EXTM3U\n',
    });
    const stored = await storage.get('live/c/a/1.ts');
    expect(stored?.body.equals(fs.readFileSync(file))).toBe(true);
    expect(stored?.contentType).toBe(tsMeta.contentType);
    expect(stored?.cacheControl).toBe(tsMeta.cacheControl);
  });

  it('put() of a file above the multipart threshold sends parts and stores every byte', async () => {
    proxy = await S3Proxy.start(server.endpoint);
    const viaProxy = s3StorageFor(proxy);
    const file = path.join(tempDir, 'big.ts');
    const bytes = Buffer.alloc(6 * 1024 * 1024 + 123);
    for (let index = 0; index < bytes.length; index += 4096) bytes[index] = index % 251;
    fs.writeFileSync(file, bytes);
    await viaProxy.put('vod/big.ts', { filePath: file }, tsMeta);
    viaProxy.close();

    const parts = proxy.requests.filter((request) => /[?&]partNumber=/.test(request.url));
    expect(parts).toHaveLength(2);
    expect(proxy.requests.some((request) => request.url.includes('uploads'))).toBe(true);
    const stored = await storage.get('vod/big.ts');
    expect(stored?.body.equals(bytes)).toBe(true);
    expect(stored?.contentType).toBe(tsMeta.contentType);
    expect(stored?.cacheControl).toBe(tsMeta.cacheControl);
  });

  it('deleteMany() sends at most 1000 keys per request and removes the objects', async () => {
    proxy = await S3Proxy.start(server.endpoint);
    const viaProxy = s3StorageFor(proxy);
    const kept = 'live/c/a/kept.ts';
    const doomed = ['live/c/a/0.ts', 'live/c/a/1000.ts', 'live/c/a/2000.ts'];
    for (const key of [...doomed, kept]) await storage.put(key, 'x', tsMeta);
    const keys = Array.from({ length: 2001 }, (_, index) => `live/c/a/${index}.ts`);
    await viaProxy.deleteMany(keys);
    viaProxy.close();

    const deletes = proxy.requests.filter((request) => request.method === 'POST');
    expect(deletes.map((request) => request.body.match(/<Key>/g)?.length)).toEqual([
      MAX_DELETE_BATCH,
      MAX_DELETE_BATCH,
      1,
    ]);
    expect(await storage.list('live/c/a/')).toEqual([kept]);
  });

  it('list() returns the keys under a prefix, sorted, and get() of a missing key is undefined', async () => {
    for (const key of ['live/b/x.ts', 'live/a/2.ts', 'live/a/1.ts', 'vod/a/1.ts']) {
      await storage.put(key, 'x', tsMeta);
    }

    expect(await storage.list('live/a/')).toEqual(['live/a/1.ts', 'live/a/2.ts']);
    expect(await storage.list('live/')).toEqual(['live/a/1.ts', 'live/a/2.ts', 'live/b/x.ts']);
    expect(await storage.get('live/a/none.ts')).toBeUndefined();
  });

  it('put() to a missing bucket throws a permanent StorageError', async () => {
    const other = s3StorageFor(server, { bucket: 'no-such-bucket' });
    const error = await storageErrorOf(() => other.put('k.ts', 'x', tsMeta));
    other.close();

    expect(error.transient).toBe(false);
    expect(error.message).toMatch(/NoSuchBucket 404/);
  });

  it('put() with an unknown access key throws a permanent StorageError', async () => {
    const other = s3StorageFor(server, { accessKeyId: 'NOT-S3RVER' });
    const error = await storageErrorOf(() => other.put('k.ts', 'x', tsMeta));
    other.close();

    expect(error.transient).toBe(false);
    expect(error.message).toMatch(/403/);
  });

  it('put() of a missing local file throws a permanent StorageError', async () => {
    const error = await storageErrorOf(() =>
      storage.put('k.ts', { filePath: path.join(tempDir, 'missing.ts') }, tsMeta),
    );
    expect(error.transient).toBe(false);
  });

  it('put() while the server is stopped throws a transient StorageError, and works after resume()', async () => {
    await storage.put('before.ts', 'x', tsMeta);
    await server.stop();
    const error = await storageErrorOf(() => storage.put('during.ts', 'x', tsMeta));
    await server.resume();
    await storage.put('after.ts', 'x', tsMeta);

    expect(error.transient).toBe(true);
    expect(await storage.list('')).toEqual(['after.ts', 'before.ts']);
  });

  it.each([
    { status: 503, code: 'SlowDown' },
    { status: 500, code: 'InternalError' },
  ])('put() answered $status $code throws a transient StorageError', async ({ status, code }) => {
    proxy = await S3Proxy.start(server.endpoint);
    proxy.failNext(1, status, code);
    const viaProxy = s3StorageFor(proxy);
    const error = await storageErrorOf(() => viaProxy.put('k.ts', 'x', tsMeta));
    // The SDK must not retry on its own: the queue owns retries.
    await viaProxy.put('k.ts', 'x', tsMeta);
    viaProxy.close();

    expect(error.transient).toBe(true);
    expect(error.message).toContain(code);
    expect(proxy.requests).toHaveLength(2);
  });

  it('put() that gets no answer within requestTimeoutMs throws a transient StorageError', async () => {
    proxy = await S3Proxy.start(server.endpoint);
    proxy.hang = true;
    const viaProxy = s3StorageFor(proxy, { requestTimeoutMs: 300 });
    const started = performance.now();
    const error = await storageErrorOf(() => viaProxy.put('k.ts', 'x', tsMeta));
    const elapsed = performance.now() - started;
    viaProxy.close();

    expect(error.transient).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2000);
  });

  it('new S3Storage() with only one of the two credentials throws a TypeError', () => {
    expect(
      () =>
        new S3Storage({
          region: 'us-east-1',
          bucket: TEST_BUCKET,
          accessKeyId: 'only-the-id',
          forcePathStyle: true,
        }),
    ).toThrow(TypeError);
  });
});

describe('LocalStorage', () => {
  it('put(), get(), list() and deleteMany() work on files under the root; metadata is not kept', async () => {
    const storage = new LocalStorage(path.join(tempDir, 'root'));
    const file = path.join(tempDir, 'seg.ts');
    fs.writeFileSync(file, 'file body');
    await storage.put('live/c/a/0.ts', { filePath: file }, tsMeta);
    await storage.put('live/c/a/index.m3u8', '#EXTM3U\n', playlistMeta);
    await storage.put('live/c/master.m3u8', Buffer.from('master'), playlistMeta);

    expect(await storage.list('live/c/a/')).toEqual(['live/c/a/0.ts', 'live/c/a/index.m3u8']);
    expect(await storage.get('live/c/a/0.ts')).toEqual({
      body: Buffer.from('file body'),
      contentType: undefined,
      cacheControl: undefined,
    });
    expect(fs.readFileSync(path.join(tempDir, 'root/live/c/master.m3u8'), 'utf8')).toBe('master');
    expect(fs.existsSync(file)).toBe(true);

    await storage.deleteMany(['live/c/a/0.ts', 'live/c/a/never-there.ts']);
    expect(await storage.list('')).toEqual(['live/c/a/index.m3u8', 'live/c/master.m3u8']);
    expect(await storage.get('live/c/a/0.ts')).toBeUndefined();
  });

  it('put() of one key from concurrent writers leaves one whole version and no temporary file', async () => {
    const storage = new LocalStorage(tempDir);
    const versions = Array.from({ length: 20 }, (_, index) => `version ${index} `.repeat(5000));
    await Promise.all(versions.map((body) => storage.put('live/index.m3u8', body, playlistMeta)));

    expect(versions).toContain(fs.readFileSync(path.join(tempDir, 'live/index.m3u8'), 'utf8'));
    expect(fs.readdirSync(path.join(tempDir, 'live'))).toEqual(['index.m3u8']);
  });

  it.each(['../escape.ts', '/absolute.ts', 'a//b.ts', 'a/./b.ts', 'a\\b.ts', ''])(
    'put() of the key %j throws a permanent StorageError',
    async (key) => {
      const storage = new LocalStorage(path.join(tempDir, 'root'));
      const error = await storageErrorOf(() => storage.put(key, 'x', tsMeta));
      expect(error.transient).toBe(false);
      expect(fs.existsSync(path.join(tempDir, 'escape.ts'))).toBe(false);
    },
  );

  it('put() of a missing source file throws a permanent StorageError and leaves no temporary file', async () => {
    const storage = new LocalStorage(tempDir);
    const error = await storageErrorOf(() =>
      storage.put('live/0.ts', { filePath: path.join(tempDir, 'missing.ts') }, tsMeta),
    );

    expect(error.transient).toBe(false);
    expect(fs.readdirSync(path.join(tempDir, 'live'))).toEqual([]);
  });

  it('list() of a root that does not exist yet is empty', async () => {
    expect(await new LocalStorage(path.join(tempDir, 'none')).list('')).toEqual([]);
  });
});
