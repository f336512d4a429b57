import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { TEST_BUCKET, TestS3Server } from '../../stream-ingest/test/support/s3rver';
import { cacheRuleFor, cacheRules, type CacheRule } from '../src/cache-rules';
import { renderNginxEdgeConfig, type NginxEdgeOptions } from '../src/nginx';
import { request, type HttpResponse } from './support/http';
import {
  childPids,
  isRunning,
  TestNginx,
  testNginxConfig,
  type NginxLayout,
} from './support/nginx';
import { RecordingOrigin } from './support/recording-origin';

// One TS packet is 188 bytes; 100 of them make a small but real-looking segment.
const SEGMENT_BYTES = 188 * 100;
// nginx keeps an object with a TTL of N s fresh for between N and N+1 s (expiry is stored in
// whole seconds), so "expired" is checked after N + 1 s plus a margin.
const ONE_SECOND_TTL_EXPIRED_MS = 2_100;

function edgeConfig(
  originUrl: string,
  bucket: string,
  rules: readonly CacheRule[] = cacheRules,
  extra: Partial<NginxEdgeOptions> = {},
): (layout: NginxLayout) => string {
  return (layout) =>
    renderNginxEdgeConfig(
      {
        listenHost: '127.0.0.1',
        listenPort: layout.port,
        originUrl,
        bucket,
        cacheDirectory: layout.cacheDirectory,
        pidFile: layout.pidFile,
        errorLogPath: layout.errorLogPath,
        accessLogPath: layout.accessLogPath,
        tempDirectory: layout.tempDirectory,
        workerProcesses: 1,
        ...extra,
      },
      rules,
    );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function sleepUntil(time: number): Promise<void> {
  await delay(Math.max(0, time - Date.now()));
}

function amzHeaders(response: HttpResponse): string[] {
  return Object.keys(response.headers).filter((name) => name.startsWith('x-amz-'));
}

let nextStream = 0;
/** A segment key no other test uses, so every test starts with a cold cache. */
function segmentKey(extension = 'ts'): string {
  nextStream += 1;
  return `live/chan-1/720p/s${nextStream}-000001.${extension}`;
}

describe('nginx edge in front of s3rver', () => {
  let s3: TestS3Server;
  let client: S3Client;
  let edge: TestNginx;

  beforeAll(async () => {
    s3 = await TestS3Server.start();
    client = s3.client();
    edge = await TestNginx.start(edgeConfig(s3.endpoint, TEST_BUCKET));
  });

  afterAll(async () => {
    await edge?.stop();
    client?.destroy();
    await s3?.close();
  });

  /** Uploads an object the way the uploader does: type and caching from the rule table. */
  async function put(key: string, body: Buffer | string): Promise<void> {
    const rule = cacheRuleFor(key);
    if (!rule) throw new Error(`no cache rule for ${key}`);
    await client.send(
      new PutObjectCommand({
        Bucket: TEST_BUCKET,
        Key: key,
        Body: body,
        ContentType: rule.contentType,
        CacheControl: rule.cacheControl,
        // s3rver echoes this back as x-amz-storage-class, which the edge must not pass on.
        StorageClass: 'STANDARD',
      }),
    );
  }

  function get(key: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
    return request(`${edge.url}/${key}`, { headers });
  }

  it('GET on a segment twice: MISS then HIT, same bytes, video/mp2t, immutable', async () => {
    const key = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    await put(key, body);

    const first = await get(key);
    const second = await get(key);

    expect(first.status).toBe(200);
    expect(first.headers['x-cache-status']).toBe('MISS');
    expect(second.status).toBe(200);
    expect(second.headers['x-cache-status']).toBe('HIT');
    expect(first.body.equals(body)).toBe(true);
    expect(second.body.equals(body)).toBe(true);
    expect(second.headers['content-type']).toBe('video/mp2t');
    expect(second.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('GET with a query string on a cached segment: HIT (the query is not in the key)', async () => {
    const key = segmentKey();
    await put(key, randomBytes(SEGMENT_BYTES));
    expect((await get(key)).headers['x-cache-status']).toBe('MISS');

    const busted = await get(`${key}?nocache=${Date.now()}`);

    expect(busted.status).toBe(200);
    expect(busted.headers['x-cache-status']).toBe('HIT');
  });

  it('GET on the master playlist twice: BYPASS both times, no-cache, updates seen at once', async () => {
    const key = 'live/chan-master/master.m3u8';
    await put(key, '#EXTM3U\n#v1\n');
    const first = await get(key);
    await put(key, '#EXTM3U\n#v2\n');
    const second = await get(key);

    for (const response of [first, second]) {
      expect(response.status).toBe(200);
      expect(response.headers['x-cache-status']).toBe('BYPASS');
      expect(response.headers['cache-control']).toBe('no-cache');
      expect(response.headers['content-type']).toBe('application/vnd.apple.mpegurl');
    }
    expect(first.body.toString()).toBe('#EXTM3U\n#v1\n');
    expect(second.body.toString()).toBe('#EXTM3U\n#v2\n');
  });

  it('GET on a media playlist: HIT within its 1 s TTL, the updated playlist after it', async () => {
    const key = 'live/chan-media/720p/index.m3u8';
    await put(key, '#EXTM3U\n#seq 1\n');
    const cachedAt = Date.now();
    const first = await get(key);
    const second = await get(key);
    // s3rver answers If-Modified-Since with 304 even when If-None-Match differs, and its
    // Last-Modified has whole seconds; a playlist rewritten within the same second would look
    // unchanged to the edge's revalidation. Real playlists change once per segment (2 s), so
    // the update is written in a later second, as in production.
    await sleepUntil((Math.floor(Date.now() / 1000) + 1) * 1000 + 50);
    await put(key, '#EXTM3U\n#seq 2\n');
    await sleepUntil(cachedAt + ONE_SECOND_TTL_EXPIRED_MS);
    const third = await get(key);

    expect(first.headers['x-cache-status']).toBe('MISS');
    expect(second.headers['x-cache-status']).toBe('HIT');
    expect(second.body.toString()).toBe('#EXTM3U\n#seq 1\n');
    expect(third.status).toBe(200);
    expect(third.headers['x-cache-status']).not.toBe('HIT');
    expect(third.body.toString()).toBe('#EXTM3U\n#seq 2\n');
    expect(third.headers['cache-control']).toBe('public, max-age=1');
  });

  it('GET with Range bytes=0-99 on a segment: 206 with Content-Range and 100 bytes', async () => {
    const key = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    await put(key, body);

    const miss = await get(key, { Range: 'bytes=0-99' });
    const hit = await get(key, { Range: 'bytes=0-99' });

    expect(miss.headers['x-cache-status']).toBe('MISS');
    expect(hit.headers['x-cache-status']).toBe('HIT');
    for (const response of [miss, hit]) {
      expect(response.status).toBe(206);
      expect(response.headers['content-range']).toBe(`bytes 0-99/${SEGMENT_BYTES}`);
      expect(response.headers['content-length']).toBe('100');
      expect(response.body.equals(body.subarray(0, 100))).toBe(true);
    }
  });

  it('GET with an Origin header: the edge CORS headers, none of S3 own', async () => {
    const key = segmentKey();
    await put(key, randomBytes(SEGMENT_BYTES));

    const response = await get(key, { Origin: 'https://player.example.com' });

    expect(response.status).toBe(200);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers['access-control-expose-headers']).toBe(
      'Content-Length, Content-Range, X-Cache-Status',
    );
    // s3rver's bucket CORS rule adds these; with "*" a credentials header would be invalid.
    expect(response.headers['access-control-allow-credentials']).toBeUndefined();
    expect(response.headers['access-control-max-age']).toBeUndefined();
    expect(response.headers.vary).toBeUndefined();
  });

  it('OPTIONS preflight: 204 at the edge with the allowed methods and headers', async () => {
    const response = await request(`${edge.url}/${segmentKey()}`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://player.example.com',
        'Access-Control-Request-Method': 'GET',
        'Access-Control-Request-Headers': 'range',
      },
    });

    expect(response.status).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers['access-control-allow-methods']).toBe('GET, HEAD, OPTIONS');
    expect(response.headers['access-control-allow-headers']).toBe(
      'Range, If-Range, If-None-Match, If-Modified-Since',
    );
    expect(response.headers['access-control-max-age']).toBe('86400');
    expect(response.body.length).toBe(0);
  });

  it('POST, PUT and DELETE on a segment: 405 with Allow, and the object stays', async () => {
    const key = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    await put(key, body);

    for (const method of ['POST', 'PUT', 'DELETE']) {
      const response = await request(`${edge.url}/${key}`, { method, body: 'x' });
      expect(response.status, method).toBe(405);
      expect(response.headers.allow, method).toBe('GET, HEAD, OPTIONS');
    }
    expect((await get(key)).body.equals(body)).toBe(true);
  });

  it('GET on a segment S3 serves with x-amz-* headers: none reach the viewer', async () => {
    const key = segmentKey();
    await put(key, randomBytes(SEGMENT_BYTES));
    const direct = await request(`${s3.endpoint}/${TEST_BUCKET}/${key}`);

    const viaEdge = await get(key);

    // The origin does send one, so the check below is not vacuous.
    expect(amzHeaders(direct)).toEqual(['x-amz-storage-class']);
    expect(viaEdge.status).toBe(200);
    expect(amzHeaders(viaEdge)).toEqual([]);
  });

  it('GET on /, an unknown suffix, or a missing segment: 404 without S3 details', async () => {
    const root = await request(`${edge.url}/`);
    const unknown = await get('live/chan-1/notes.txt');
    const missing = await get('live/chan-1/720p/missing-000001.ts');

    for (const response of [root, unknown, missing]) {
      expect(response.status).toBe(404);
      expect(response.body.toString()).not.toMatch(/ListBucketResult|NoSuchKey|hearth-test/);
    }
  });

  it('GET while s3rver is stopped: a cached segment is a HIT, an uncached one a 502', async () => {
    const cachedKey = segmentKey();
    const uncachedKey = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    await put(cachedKey, body);
    await put(uncachedKey, randomBytes(SEGMENT_BYTES));
    expect((await get(cachedKey)).headers['x-cache-status']).toBe('MISS');

    await s3.stop();
    onTestFinished(() => s3.resume());
    const cached = await get(cachedKey);
    const uncached = await get(uncachedKey);

    expect(cached.status).toBe(200);
    expect(['HIT', 'STALE']).toContain(cached.headers['x-cache-status']);
    expect(cached.body.equals(body)).toBe(true);
    expect(uncached.status).toBe(502);
  });
});

describe('nginx edge in front of a recording origin', () => {
  const bucket = 'hearth-live';
  // Every cached rule gets a 1 s TTL so that expiry can be tested in a few seconds.
  const shortRules = cacheRules.map((rule) =>
    rule.edgeTtlSeconds > 0 ? { ...rule, edgeTtlSeconds: 1 } : rule,
  );
  let origin: RecordingOrigin;
  let edge: TestNginx;

  beforeAll(async () => {
    origin = await RecordingOrigin.start();
    edge = await TestNginx.start(edgeConfig(origin.endpoint, bucket, shortRules));
  });

  afterAll(async () => {
    await edge?.stop();
    await origin?.close();
  });

  /** Stores an object at the origin and returns the path the edge must request it by. */
  function store(key: string, body: Buffer | string, etag = `"${key}"`): string {
    const rule = cacheRuleFor(key);
    if (!rule) throw new Error(`no cache rule for ${key}`);
    const originPath = `/${bucket}/${key}`;
    origin.objects.set(originPath, {
      body: Buffer.from(body),
      contentType: rule.contentType,
      etag,
    });
    return originPath;
  }

  it('GET forwards a path-style request without credentials, Origin, Range or query', async () => {
    const key = segmentKey();
    const originPath = store(key, randomBytes(SEGMENT_BYTES));

    const response = await request(`${edge.url}/${key}?token=secret&acl`, {
      headers: {
        Authorization: 'Bearer viewer-token',
        Cookie: 'session=viewer',
        Origin: 'https://player.example.com',
        Range: 'bytes=0-99',
        'If-Range': '"x"',
      },
    });

    expect(response.headers['x-cache-status']).toBe('MISS');
    expect(origin.requestsFor(originPath)).toHaveLength(1);
    const [forwarded] = origin.requestsFor(originPath);
    expect(forwarded?.method).toBe('GET');
    expect(forwarded?.url).toBe(originPath);
    expect(forwarded?.headers.host).toBe(new URL(origin.endpoint).host);
    for (const header of ['authorization', 'cookie', 'origin', 'range', 'if-range']) {
      expect(forwarded?.headers[header], header).toBeUndefined();
    }
  });

  it('GET with Range on a MISS from an origin sending no Accept-Ranges: 206 with 100 bytes', async () => {
    // S3 sends Accept-Ranges, which alone lets nginx cut ranges; this origin does not, so only
    // proxy_force_ranges makes the edge answer 206 while it fetches the whole object.
    const key = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    store(key, body);

    const response = await request(`${edge.url}/${key}`, { headers: { Range: 'bytes=0-99' } });

    expect(response.headers['x-cache-status']).toBe('MISS');
    expect(response.status).toBe(206);
    expect(response.headers['content-range']).toBe(`bytes 0-99/${SEGMENT_BYTES}`);
    expect(response.body.equals(body.subarray(0, 100))).toBe(true);
  });

  it('20 concurrent GETs on an uncached segment make one origin request', async () => {
    const key = segmentKey();
    const body = randomBytes(SEGMENT_BYTES);
    const originPath = store(key, body);
    // The origin holds its answer so that every viewer request arrives while it is in flight.
    origin.delayMs = 300;
    onTestFinished(() => {
      origin.delayMs = 0;
    });

    const responses = await Promise.all(
      Array.from({ length: 20 }, () => request(`${edge.url}/${key}`)),
    );

    expect(origin.requestsFor(originPath)).toHaveLength(1);
    expect(responses.map((response) => response.status)).toEqual(Array(20).fill(200));
    expect(responses.every((response) => response.body.equals(body))).toBe(true);
    const statuses = responses.map((response) => response.headers['x-cache-status']);
    expect(statuses.filter((status) => status === 'MISS')).toHaveLength(1);
    expect(statuses.filter((status) => status === 'HIT')).toHaveLength(19);
  });

  it('10 concurrent GETs on an expired playlist make one refresh; the rest get UPDATING', async () => {
    nextStream += 1;
    const key = `live/chan-${nextStream}/720p/index.m3u8`;
    const originPath = store(key, '#EXTM3U\n#seq 1\n', '"v1"');
    const cachedAt = Date.now();
    expect((await request(`${edge.url}/${key}`)).headers['x-cache-status']).toBe('MISS');
    await sleepUntil(cachedAt + ONE_SECOND_TTL_EXPIRED_MS);
    store(key, '#EXTM3U\n#seq 2\n', '"v2"');
    origin.delayMs = 300;
    onTestFinished(() => {
      origin.delayMs = 0;
    });

    const responses = await Promise.all(
      Array.from({ length: 10 }, () => request(`${edge.url}/${key}`)),
    );

    expect(origin.requestsFor(originPath)).toHaveLength(2);
    const byStatus = new Map<string, string[]>();
    for (const response of responses) {
      const status = String(response.headers['x-cache-status']);
      byStatus.set(status, [...(byStatus.get(status) ?? []), response.body.toString()]);
    }
    expect(Object.fromEntries(byStatus)).toEqual({
      EXPIRED: ['#EXTM3U\n#seq 2\n'],
      UPDATING: Array(9).fill('#EXTM3U\n#seq 1\n'),
    });
  });

  it('GET on expired objects while the origin fails: segment STALE, playlist 503', async () => {
    const segment = segmentKey();
    const playlist = `live/chan-${nextStream}/720p/index.m3u8`;
    const body = randomBytes(SEGMENT_BYTES);
    store(segment, body);
    store(playlist, '#EXTM3U\n');
    const cachedAt = Date.now();
    expect((await request(`${edge.url}/${segment}`)).headers['x-cache-status']).toBe('MISS');
    expect((await request(`${edge.url}/${playlist}`)).headers['x-cache-status']).toBe('MISS');
    await sleepUntil(cachedAt + ONE_SECOND_TTL_EXPIRED_MS);

    origin.failWith = 503;
    onTestFinished(() => {
      origin.failWith = undefined;
    });
    const staleSegment = await request(`${edge.url}/${segment}`);
    const failedPlaylist = await request(`${edge.url}/${playlist}`);

    expect(staleSegment.status).toBe(200);
    expect(staleSegment.headers['x-cache-status']).toBe('STALE');
    expect(staleSegment.body.equals(body)).toBe(true);
    expect(failedPlaylist.status).toBe(503);
  });

  it('GET on an expired, unchanged playlist revalidates with If-None-Match', async () => {
    nextStream += 1;
    const key = `live/chan-${nextStream}/720p/index.m3u8`;
    const originPath = store(key, '#EXTM3U\n#seq 7\n', '"v7"');
    const cachedAt = Date.now();
    expect((await request(`${edge.url}/${key}`)).headers['x-cache-status']).toBe('MISS');
    await sleepUntil(cachedAt + ONE_SECOND_TTL_EXPIRED_MS);

    const refreshed = await request(`${edge.url}/${key}`);

    expect(refreshed.status).toBe(200);
    expect(refreshed.headers['x-cache-status']).toBe('REVALIDATED');
    expect(refreshed.body.toString()).toBe('#EXTM3U\n#seq 7\n');
    const requests = origin.requestsFor(originPath);
    expect(requests).toHaveLength(2);
    expect(requests[0]?.headers['if-none-match']).toBeUndefined();
    expect(requests[1]?.headers['if-none-match']).toBe('"v7"');
  });
});

describe('nginx edge in front of an LL-HLS origin that asks for the edge secret', () => {
  const bucket = 'hearth-live';
  const secret = 'live_origin_secret_'.repeat(2);
  // The live origin holds nothing, as an ingest node not running the stream: S3 answers after it.
  let s3: RecordingOrigin;
  let liveOrigin: RecordingOrigin;
  let edge: TestNginx;

  beforeAll(async () => {
    s3 = await RecordingOrigin.start();
    liveOrigin = await RecordingOrigin.start();
    edge = await TestNginx.start(
      edgeConfig(s3.endpoint, bucket, cacheRules, {
        liveOriginUrl: liveOrigin.endpoint,
        liveOriginSecret: secret,
      }),
    );
  });

  afterAll(async () => {
    await edge?.stop();
    await liveOrigin?.close();
    await s3?.close();
  });

  it('live playlists and parts reach the origin with the secret and none of the viewer’s credentials; the S3 fallback never sees the secret', async () => {
    const viewer = {
      Authorization: 'Bearer viewer-token',
      Cookie: 'session=viewer',
      Origin: 'https://player.example.com',
    };
    for (const [key, query] of [
      ['live/c/720p/index.m3u8', '?_HLS_msn=3&_HLS_part=1'],
      ['live/c/720p/s1-3.1.m4s', ''],
    ] as const) {
      const rule = cacheRuleFor(key)!;
      s3.objects.set(`/${bucket}/${key}`, {
        body: Buffer.from(key),
        contentType: rule.contentType,
        etag: `"${key}"`,
      });

      const response = await request(`${edge.url}/${key}${query}`, { headers: viewer });

      expect(response.status, key).toBe(200);
      expect(response.body.toString()).toBe(key);
      const [toLiveOrigin] = liveOrigin.requestsFor(`/${key}`);
      expect(toLiveOrigin?.headers['x-hearth-edge-secret'], key).toBe(secret);
      const [toS3] = s3.requestsFor(`/${bucket}/${key}`);
      expect(toS3?.headers['x-hearth-edge-secret'], key).toBeUndefined();
      for (const header of ['authorization', 'cookie', 'origin']) {
        expect(toLiveOrigin?.headers[header], `${key} ${header}`).toBeUndefined();
        expect(toS3?.headers[header], `${key} ${header}`).toBeUndefined();
      }
    }
    expect(liveOrigin.requests.map((seen) => seen.url)).toContain(
      '/live/c/720p/index.m3u8?_HLS_msn=3&_HLS_part=1',
    );
  });
});

describe('TestNginx and the rendered config', () => {
  it('renderNginxEdgeConfig() for an https origin passes nginx -t', async () => {
    const result = await testNginxConfig(edgeConfig('https://127.0.0.1:9443', 'hearth-live'));

    expect(result.output).toContain('test is successful');
    expect(result.ok).toBe(true);
  });

  it('renderNginxEdgeConfig() with a live origin, or with the api naming each channel’s, passes nginx -t; with both it throws', async () => {
    for (const live of [
      { liveOriginUrl: 'http://127.0.0.1:4490' },
      {
        liveOriginResolver: { apiUrl: 'http://127.0.0.1:8080', edgeSecret: 'e'.repeat(32) },
        playbackSigningSecret: 's'.repeat(32),
      },
    ]) {
      const result = await testNginxConfig(
        edgeConfig('http://127.0.0.1:9000', 'hearth-live', cacheRules, live),
      );
      expect(result.output).toContain('test is successful');
      expect(result.ok).toBe(true);
    }
    expect(() =>
      edgeConfig('http://127.0.0.1:9000', 'hearth-live', cacheRules, {
        liveOriginUrl: 'http://127.0.0.1:4490',
        liveOriginResolver: { apiUrl: 'http://127.0.0.1:8080', edgeSecret: 'e'.repeat(32) },
      })({
        prefix: '/tmp/edge',
        port: 1,
        configPath: '/tmp/edge/nginx.conf',
        pidFile: '/tmp/edge/nginx.pid',
        errorLogPath: '/tmp/edge/error.log',
        accessLogPath: '/tmp/edge/access.log',
        cacheDirectory: '/tmp/edge/cache',
        tempDirectory: '/tmp/edge/temp',
      }),
    ).toThrow('give liveOriginUrl or liveOriginResolver, not both');
  });

  it('TestNginx.stop() ends the master and its workers and removes the prefix', async () => {
    const origin = await RecordingOrigin.start();
    onTestFinished(() => origin.close());
    const edge = await TestNginx.start(edgeConfig(origin.endpoint, 'hearth-live'));
    const workers = childPids(edge.pid);
    // One worker, the cache manager and the cache loader.
    expect(workers.length).toBeGreaterThanOrEqual(2);

    await edge.stop();

    expect(edge.exited).toBe(true);
    expect([edge.pid, ...workers].filter(isRunning)).toEqual([]);
    expect(fs.existsSync(edge.layout.prefix)).toBe(false);
    await edge.stop();
  });

  it('renderNginxEdgeConfig() with masterProcess off caches in a single process', async () => {
    const origin = await RecordingOrigin.start();
    onTestFinished(() => origin.close());
    const key = segmentKey();
    origin.objects.set(`/hearth-live/${key}`, {
      body: Buffer.from('segment'),
      contentType: 'video/mp2t',
      etag: '"s"',
    });
    const edge = await TestNginx.start(
      edgeConfig(origin.endpoint, 'hearth-live', cacheRules, { masterProcess: false }),
    );
    onTestFinished(() => edge.stop());

    const first = await request(`${edge.url}/${key}`);
    const second = await request(`${edge.url}/${key}`);

    expect(childPids(edge.pid)).toEqual([]);
    expect(first.headers['x-cache-status']).toBe('MISS');
    expect(second.headers['x-cache-status']).toBe('HIT');
  });
});
