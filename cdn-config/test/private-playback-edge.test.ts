import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BUCKET, TestS3Server } from '../../stream-ingest/test/support/s3rver';
import { cacheRuleFor } from '../src/cache-rules';
import { startNginxEdge } from '../src/edge';
import type { NginxProcess } from '../src/nginx-process';
import { signedChannelPath, storagePrefixOf } from '../src/private-playback';
import { request, type HttpResponse } from './support/http';
import { RecordingOrigin } from './support/recording-origin';

const SECRET = 'f'.repeat(64);
const OTHER_SECRET = '0'.repeat(64);
const CHANNEL = 'club';
const MASTER = '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n720p/index.m3u8\n';
const MEDIA = '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1-000001.ts\n';
const SEGMENT = randomBytes(188 * 50);
// The master playlist, a media playlist and a segment it names, relative to the channel prefix;
// and an fMP4 segment and part, which an edge with an LL-HLS origin asks that origin for first.
const OBJECTS: Record<string, Buffer | string> = {
  'master.m3u8': MASTER,
  '720p/index.m3u8': MEDIA,
  '720p/s1-000001.ts': SEGMENT,
  '720p/s1-2.m4s': randomBytes(1000),
  '720p/s1-3.1.m4s': randomBytes(500),
};

function inAnHour(): number {
  return Math.floor(Date.now() / 1000) + 3600;
}

describe.each([
  { edgeKind: 'reading S3 only', withLiveOrigin: false },
  { edgeKind: 'with an LL-HLS origin that does not serve the channel', withLiveOrigin: true },
])('nginx edge: private channels, $edgeKind', ({ withLiveOrigin }) => {
  let s3: TestS3Server;
  let client: S3Client;
  let edge: NginxProcess;
  // Answers 404 to everything, as an ingest node that holds no stream of the channel: the edge
  // then reads S3.
  let liveOrigin: RecordingOrigin | undefined;

  beforeAll(async () => {
    s3 = await TestS3Server.start();
    client = s3.client();
    if (withLiveOrigin) liveOrigin = await RecordingOrigin.start();
    edge = await startNginxEdge({
      originUrl: s3.endpoint,
      bucket: TEST_BUCKET,
      playbackSigningSecret: SECRET,
      liveOriginUrl: liveOrigin?.endpoint,
    });
    for (const [name, body] of Object.entries(OBJECTS)) {
      const key = `${storagePrefixOf(CHANNEL, true)}/${name}`;
      const rule = cacheRuleFor(key)!;
      await client.send(
        new PutObjectCommand({
          Bucket: TEST_BUCKET,
          Key: key,
          Body: body,
          ContentType: rule.contentType,
          CacheControl: rule.cacheControl,
        }),
      );
    }
  });

  afterAll(async () => {
    await edge?.stop();
    await liveOrigin?.close();
    client?.destroy();
    await s3?.close();
  });

  function get(path: string): Promise<HttpResponse> {
    return request(`${edge.url}${path}`);
  }

  it('GET through a valid signed path serves the master, the media playlist and the segment', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: inAnHour(),
      secret: SECRET,
    });

    const master = await get(`${prefix}/master.m3u8`);
    // The variant is found the way a player finds it: relative to the master playlist's URL.
    const mediaUrl = new URL(
      master.body.toString().trim().split('\n').at(-1)!,
      `${edge.url}${prefix}/master.m3u8`,
    );
    const media = await get(mediaUrl.pathname);
    const segmentUrl = new URL(media.body.toString().trim().split('\n').at(-1)!, mediaUrl);
    const segment = await get(segmentUrl.pathname);
    const again = await get(segmentUrl.pathname);

    expect(master.status).toBe(200);
    expect(master.body.toString()).toBe(MASTER);
    expect(master.headers['content-type']).toBe('application/vnd.apple.mpegurl');
    expect(media.status).toBe(200);
    expect(media.body.toString()).toBe(MEDIA);
    expect(segment.status).toBe(200);
    expect(segment.body.equals(SEGMENT)).toBe(true);
    expect(segment.headers['content-type']).toBe('video/mp2t');
    expect(again.headers['x-cache-status']).toBe('HIT');
    for (const name of ['720p/s1-2.m4s', '720p/s1-3.1.m4s']) {
      const object = await get(`${prefix}/${name}`);
      expect(object.status).toBe(200);
      expect(object.body.equals(OBJECTS[name] as Buffer)).toBe(true);
    }
    // An LL-HLS origin is asked first, under the private path; S3 answers after its 404.
    const asked = (liveOrigin?.requests ?? []).map((seen) => seen.url.split('?')[0]);
    const privatePath = `/${storagePrefixOf(CHANNEL, true)}`;
    expect(asked.includes(`${privatePath}/720p/index.m3u8`)).toBe(withLiveOrigin);
    expect(asked.includes(`${privatePath}/720p/s1-2.m4s`)).toBe(withLiveOrigin);
  });

  it('GET on the private objects by their plain paths is 404, so only signed paths reach them', async () => {
    for (const name of Object.keys(OBJECTS)) {
      expect((await get(`/${storagePrefixOf(CHANNEL, true)}/${name}`)).status).toBe(404);
      expect((await get(`/${storagePrefixOf(CHANNEL, false)}/${name}`)).status).toBe(404);
      // Dot segments that climb out of the signed prefix land on the plain path.
      const climbing = `/live/_s/../../${storagePrefixOf(CHANNEL, true)}/${name}`;
      expect((await get(climbing)).status).toBe(404);
    }
  });

  it('GET with a signature made with another secret is refused with 403', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: inAnHour(),
      secret: OTHER_SECRET,
    });

    const response = await get(`${prefix}/master.m3u8`);

    expect(response.status).toBe(403);
    expect(response.body.toString()).not.toContain(TEST_BUCKET);
  });

  it('GET with an expired signature is refused with 403', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: Math.floor(Date.now() / 1000) - 1,
      secret: SECRET,
    });

    expect((await get(`${prefix}/master.m3u8`)).status).toBe(403);
    expect((await get(`${prefix}/720p/s1-000001.ts`)).status).toBe(403);
  });

  it('GET with a valid signature whose expiry was pushed later is refused with 403', async () => {
    const expires = inAnHour();
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: expires,
      secret: SECRET,
    });

    const stretched = prefix.replace(`/${expires}/`, `/${expires + 86_400}/`);

    expect((await get(`${stretched}/master.m3u8`)).status).toBe(403);
  });

  it("GET with one channel's signature on another channel's path is refused with 403", async () => {
    const other = signedChannelPath({
      channel: 'other',
      expiresAtSeconds: inAnHour(),
      secret: SECRET,
    });

    const borrowed = other.replace(/\/other$/, `/${CHANNEL}`);

    expect((await get(`${borrowed}/master.m3u8`)).status).toBe(403);
  });

  it('GET on malformed signed paths is refused with 403 (missing parts, dot segments)', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: inAnHour(),
      secret: SECRET,
    });

    expect((await get('/live/_s/master.m3u8')).status).toBe(403);
    expect((await get(`/live/_s/x/1/${CHANNEL}/master.m3u8`)).status).toBe(403);
    // nginx merges dot segments before matching, so this climbs to another channel's path,
    // whose signature check then fails.
    expect((await get(`${prefix}/../other/master.m3u8`)).status).toBe(403);
  });

  it('the access log keeps the signed path without its signature', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: inAnHour(),
      secret: SECRET,
    });
    const signature = prefix.split('/')[3]!;
    await get(`${prefix}/master.m3u8`);

    // nginx writes the access log line when the response is done, before the connection closes.
    const log = fs.readFileSync(edge.layout.accessLogPath, 'utf8');
    expect(log).toContain(`/live/_s/-/${prefix.split('/')[4]}/${CHANNEL}/master.m3u8`);
    expect(log).not.toContain(signature);
  });
});

describe('nginx edge without a playback signing secret', () => {
  let edge: NginxProcess;

  beforeAll(async () => {
    edge = await startNginxEdge({ originUrl: 'http://127.0.0.1:9', bucket: TEST_BUCKET });
  });

  afterAll(async () => {
    await edge?.stop();
  });

  it('GET on any signed path is refused with 403', async () => {
    const prefix = signedChannelPath({
      channel: CHANNEL,
      expiresAtSeconds: inAnHour(),
      secret: SECRET,
    });

    expect((await request(`${edge.url}${prefix}/master.m3u8`)).status).toBe(403);
  });
});
