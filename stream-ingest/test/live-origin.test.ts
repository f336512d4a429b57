import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LiveOrigin, type OriginRequestKind, type OriginStream } from '../src/live-origin';
import type { LivePart } from '../src/part-cutter';
import { SeededRandom } from '../../e2e/support/impairment/random';
import { silentLogger } from './support/publisher-fixtures';

const PARTS_PER_SEGMENT = 3;

let server: http.Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

// An origin on loopback serving one stream under `prefix` (live/c by default) with renditions a
// and b, segments of `segmentSeconds` made of three parts each.
async function startOrigin(
  options: {
    maxBlockedRequests?: number;
    segmentSeconds?: number;
    prefix?: string;
    edgeSecret?: string;
  } = {},
) {
  const requests: OriginRequestKind[] = [];
  const origin = new LiveOrigin(
    {
      maxBlockedRequests: options.maxBlockedRequests ?? 100,
      windowSegments: 4,
      onRequest: (kind) => requests.push(kind),
      edgeSecret: options.edgeSecret,
    },
    silentLogger,
  );
  const segmentSeconds = options.segmentSeconds ?? 1;
  const stream = origin.open(options.prefix ?? 'live/c', {
    streamId: 's1',
    segmentSeconds,
    renditions: [
      { name: 'a', partTargetSec: segmentSeconds / PARTS_PER_SEGMENT },
      { name: 'b', partTargetSec: segmentSeconds / PARTS_PER_SEGMENT },
    ],
    masterPlaylist: '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na/index.m3u8\n',
  });
  server = http.createServer((request, response) => {
    if (!origin.handle(request, response)) {
      response.writeHead(418);
      response.end();
    }
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const writer = new StreamWriter(stream, segmentSeconds / PARTS_PER_SEGMENT);
  return { origin, stream, base, requests, writer };
}

/** Adds parts to both renditions of a stream, as the transcoder would. */
class StreamWriter {
  readonly #stream: OriginStream;
  readonly #partSec: number;
  #msn = 0;
  #index = 0;

  constructor(stream: OriginStream, partSec: number) {
    this.#stream = stream;
    this.#partSec = partSec;
    for (const rendition of ['a', 'b']) this.#stream.setInit(rendition, 0, Buffer.from('init'));
  }

  /** Adds the next part to both renditions, finishing a segment every three parts. */
  next(): void {
    if (this.#index === PARTS_PER_SEGMENT) {
      for (const rendition of ['a', 'b']) {
        this.#stream.finishSegment(rendition, {
          msn: this.#msn,
          durationSec: PARTS_PER_SEGMENT * this.#partSec,
          programDateTime: new Date(),
        });
      }
      this.#msn += 1;
      this.#index = 0;
    }
    for (const rendition of ['a', 'b']) {
      const part: LivePart = {
        msn: this.#msn,
        index: this.#index,
        bytes: Buffer.from(`${rendition} ${this.#msn}.${this.#index}`),
        durationSec: this.#partSec,
        independent: this.#index === 0,
      };
      this.#stream.addPart(rendition, part, false);
    }
    this.#index += 1;
  }

  /** Adds `count` parts. */
  advance(count: number): void {
    for (let i = 0; i < count; i++) this.next();
  }
}

async function get(url: string): Promise<{ status: number; text: string; at: number }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text(), at: performance.now() };
}

describe('LiveOrigin', () => {
  it('a blocking playlist request returns as soon as the part it asks for exists, and not before', async () => {
    const { base, writer } = await startOrigin();
    writer.advance(5); // 0.0 0.1 0.2 1.0 1.1
    const asked = performance.now();
    const pending = get(`${base}/live/c/a/index.m3u8?_HLS_msn=1&_HLS_part=2`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const addedAt = performance.now();
    writer.next(); // 1.2
    const answer = await pending;
    expect(answer.status).toBe(200);
    expect(answer.at - asked).toBeGreaterThanOrEqual(300);
    expect(answer.at - addedAt).toBeLessThan(200);
    expect(answer.text).toContain('#EXT-X-PART:DURATION=0.333,URI="s1-1.2.m4s"');
    expect(answer.text).toContain('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s1-2.0.m4s"');
    // The answer leaves as soon as rendition a has the part; b may be a part behind then.
    expect(answer.text).toMatch(
      /^#EXT-X-RENDITION-REPORT:URI="\.\.\/b\/index\.m3u8",LAST-MSN=1,LAST-PART=[12]$/m,
    );

    // Asking for what is already there answers at once; asking for a whole segment waits for it.
    expect((await get(`${base}/live/c/a/index.m3u8?_HLS_msn=1&_HLS_part=0`)).status).toBe(200);
    const segment = get(`${base}/live/c/a/index.m3u8?_HLS_msn=1`);
    writer.next(); // 2.0 completes segment 1
    expect((await segment).text).toContain('s1-1.m4s');
  });

  it('the part a preload hint names is held until it exists; one further ahead is not found', async () => {
    const { base, writer } = await startOrigin();
    writer.advance(2);
    const pending = fetch(`${base}/live/c/b/s1-0.2.m4s`);
    expect((await get(`${base}/live/c/b/s1-1.1.m4s`)).status).toBe(404);
    writer.next();
    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('video/iso.segment');
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await response.text()).toBe('b 0.2');
    // A finished segment is its parts, in order.
    writer.next();
    expect((await get(`${base}/live/c/b/s1-0.m4s`)).text).toBe('b 0.0b 0.1b 0.2');
    expect((await get(`${base}/live/c/b/s1-init-0.mp4`)).text).toBe('init');
  });

  it('refuses what the spec refuses: a segment more than two ahead, a part without a segment, numbers that are not numbers', async () => {
    const { base, writer } = await startOrigin();
    writer.advance(1);
    for (const query of [
      '_HLS_msn=3',
      '_HLS_part=1',
      '_HLS_msn=-1',
      '_HLS_msn=1e3',
      '_HLS_msn=1&_HLS_part=x',
    ]) {
      expect((await get(`${base}/live/c/a/index.m3u8?${query}`)).status, query).toBe(400);
    }
    // Empty parameters, as the edge forwards them when a player sent none, are no parameters.
    expect((await get(`${base}/live/c/a/index.m3u8?_HLS_msn=&_HLS_part=`)).status).toBe(200);
    expect((await fetch(`${base}/live/c/a/index.m3u8`, { method: 'POST' })).status).toBe(405);
    expect((await get(`${base}/live/other/a/index.m3u8`)).status).toBe(404);
    expect((await get(`${base}/live/c/z/index.m3u8`)).status).toBe(404);
    expect((await get(`${base}/metrics`)).status).toBe(418);
  });

  it('a request that waits three target durations gets 503; past maxBlockedRequests, 503 at once; a viewer that leaves frees its slot', async () => {
    const { base, origin, writer } = await startOrigin({
      maxBlockedRequests: 2,
      segmentSeconds: 1,
    });
    writer.advance(1);
    const asked = performance.now();
    const first = get(`${base}/live/c/a/index.m3u8?_HLS_msn=2`);
    const leaving = new AbortController();
    const second = fetch(`${base}/live/c/a/index.m3u8?_HLS_msn=2&_HLS_part=1`, {
      signal: leaving.signal,
    }).catch(() => 'aborted');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(origin.blockedRequests).toBe(2);
    expect((await get(`${base}/live/c/a/index.m3u8?_HLS_msn=1`)).status).toBe(503);
    leaving.abort();
    expect(await second).toBe('aborted');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(origin.blockedRequests).toBe(1);
    const timedOut = await first;
    expect(timedOut.status).toBe(503);
    expect(timedOut.at - asked).toBeGreaterThanOrEqual(2900);
    expect(origin.blockedRequests).toBe(0);
  });

  it('the end of the stream answers blocked requests with the final playlist; a newer stream under the prefix takes over', async () => {
    const { base, origin, stream, writer } = await startOrigin();
    writer.advance(4);
    const pending = get(`${base}/live/c/a/index.m3u8?_HLS_msn=2`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    stream.end();
    const final = await pending;
    expect(final.status).toBe(200);
    expect(final.text.trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
    expect(final.text).not.toContain('PRELOAD-HINT');
    const next = origin.open('live/c', {
      streamId: 's2',
      segmentSeconds: 1,
      renditions: [{ name: 'a', partTargetSec: 0.334 }],
      masterPlaylist: '#EXTM3U\n',
    });
    next.setInit('a', 0, Buffer.from('init 2'));
    expect((await get(`${base}/live/c/a/s1-init-0.mp4`)).status).toBe(404);
    expect((await get(`${base}/live/c/a/s2-init-0.mp4`)).text).toBe('init 2');
    stream.close();
    expect((await get(`${base}/live/c/a/s2-init-0.mp4`)).status).toBe(200);
  });

  it('serves the master playlist once every rendition has a part, and counts what it serves', async () => {
    const { base, requests, writer } = await startOrigin();
    expect((await get(`${base}/live/c/master.m3u8`)).status).toBe(404);
    writer.next();
    const master = await fetch(`${base}/live/c/master.m3u8`);
    expect(master.status).toBe(200);
    expect(master.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
    await get(`${base}/live/c/a/index.m3u8`);
    await get(`${base}/live/c/a/index.m3u8?_HLS_msn=0&_HLS_part=0`);
    await get(`${base}/live/c/a/s1-0.0.m4s`);
    expect(requests).toEqual(['master', 'playlist', 'blocking-playlist', 'media']);
  });

  it('with an edge secret, only requests that carry it are answered; the others get 403', async () => {
    const secret = 'edge_secret_'.repeat(4);
    const { base, writer, requests } = await startOrigin({ edgeSecret: secret });
    writer.advance(2);
    const playlist = `${base}/live/c/a/index.m3u8`;
    const asEdge = (value: string) =>
      fetch(playlist, { headers: { 'x-hearth-edge-secret': value } });

    expect((await get(playlist)).status).toBe(403);
    expect((await asEdge(secret.slice(1))).status).toBe(403);
    expect((await asEdge(`${secret}x`)).status).toBe(403);
    expect((await get(`${base}/live/c/a/s1-0.0.m4s`)).status).toBe(403);
    expect(requests).toEqual([]);
    const answer = await asEdge(secret);
    expect(answer.status).toBe(200);
    expect(await answer.text()).toContain('#EXT-X-PART:');
  });

  it('without an edge secret, a private stream is never served, whatever the request carries', async () => {
    const { base, writer, requests } = await startOrigin({ prefix: 'private/c' });
    writer.advance(2);

    expect((await get(`${base}/private/c/a/index.m3u8`)).status).toBe(403);
    expect((await get(`${base}/private/c/master.m3u8`)).status).toBe(403);
    const withHeader = await fetch(`${base}/private/c/a/s1-0.0.m4s`, {
      headers: { 'x-hearth-edge-secret': 'anything_at_all_'.repeat(3) },
    });
    expect(withHeader.status).toBe(403);
    expect(requests).toEqual([]);
  });

  it('random paths, methods and queries get an answer (200, 400, 404, 405 or 503), never a crash', async () => {
    const { base, writer } = await startOrigin({ maxBlockedRequests: 5 });
    writer.advance(7);
    const random = new SeededRandom(7);
    const pick = <T>(items: readonly T[]) => items[Math.floor(random.next() * items.length)]!;
    const pieces = [
      'live',
      'private',
      'c',
      'a',
      'b',
      'index.m3u8',
      's1-1.2.m4s',
      '..',
      '%00',
      'x'.repeat(300),
      'master.m3u8',
      '',
    ];
    const queries = [
      '',
      '?_HLS_msn=2',
      '?_HLS_msn=2&_HLS_part=1',
      '?_HLS_part=',
      '?_HLS_msn=99999999999',
      '?%zz',
      '?_HLS_msn=2&_HLS_msn=3',
    ];
    for (let round = 0; round < 300; round++) {
      const segments = Array.from({ length: 1 + Math.floor(random.next() * 5) }, () =>
        pick(pieces),
      );
      const url = `${base}/${segments.join('/')}${pick(queries)}`;
      const response = await fetch(url, {
        method: pick(['GET', 'HEAD', 'POST', 'DELETE']),
        signal: AbortSignal.timeout(200),
      }).catch(() => undefined);
      // A request still blocked after 200 ms was held for a part to come; it was let go.
      if (response) expect([200, 400, 404, 405, 418, 503]).toContain(response.status);
    }
    expect((await get(`${base}/live/c/a/index.m3u8`)).status).toBe(200);
  });
});
