import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterEach, describe, expect, it } from 'vitest';
import { startNginxEdge } from '@hearth/cdn-config';
import { nodeListSchema } from '@hearth/protocol';
import { ingestConfig } from '@hearth/stream-ingest';
import { operator } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { probeSegment } from '../stream-ingest/test/support/ffmpeg-fixtures';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { transcoderPids } from './support/transcoders';
import { eventually } from './support/wait';
import { exited, publishLikeObs } from './support/obs';

let api: TestApi | undefined;
let s3: TestS3Server | undefined;
let workDir: string | undefined;

afterEach(async () => {
  await api?.close();
  await s3?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  api = undefined;
  s3 = undefined;
  workDir = undefined;
});

async function start(
  ingest: Record<string, string> = {},
): Promise<{ api: TestApi; s3: TestS3Server }> {
  s3 = await TestS3Server.start();
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-ingest-test-'));
  api = await startTestApi({
    ingest: {
      config: ingestConfig({ rtmpPort: '0', workDir, retainSegments: '1000', ...ingest }),
      storage: s3.storage(),
    },
  });
  return { api, s3 };
}

function rtmpUrl(key: string): string {
  return `rtmp://127.0.0.1:${api!.ingest!.rtmp.port}/live/${key}`;
}

async function getObject(key: string): Promise<Response> {
  return fetch(`${s3!.endpoint}/${TEST_BUCKET}/${key}`);
}

// s3rver rewrites an object in place, so a read that overlaps an upload of the same playlist can
// be cut short; a couple of fresh reads tell that apart from a real failure.
async function text(key: string): Promise<string | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await getObject(key);
      return response.ok ? await response.text() : null;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

// For objects that exist already: s3rver can briefly answer an object that is being rewritten as
// missing, so the read is repeated for a moment before the test fails.
async function existingText(key: string): Promise<string> {
  let found: string | null = null;
  await eventually(
    async () => {
      found = await text(key);
      return found !== null;
    },
    5000,
    key,
  );
  return found!;
}

async function listKeys(prefix: string): Promise<string[]> {
  const listed = await s3!
    .client()
    .send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((object) => object.Key!);
}

/** Variant playlist URIs of a master playlist, with the attribute line before each. */
function variants(master: string): { uri: string; attributes: string }[] {
  const lines = master.split('\n');
  return lines.flatMap((line, index) =>
    line.startsWith('#EXT-X-STREAM-INF:')
      ? [{ attributes: line, uri: lines[index + 1]!.trim() }]
      : [],
  );
}

function segmentUris(playlist: string): string[] {
  return playlist.split('\n').filter((line) => line.endsWith('.m4s'));
}

async function probeVideo(
  file: string,
): Promise<{ width: number; height: number; keyframePts: number[] }> {
  const { width, height, frames } = await probeSegment(file);
  return {
    width,
    height,
    keyframePts: frames.filter((frame) => frame.keyFrame).map((frame) => frame.ptsTime),
  };
}

// A segment as a player reads it, into a file ffprobe can open: the init segment the playlist
// maps it to, then the segment.
async function download(folder: string, playlist: string, uri: string): Promise<string> {
  const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!;
  const bytes = async (name: string) =>
    Buffer.from(await (await getObject(`${folder}/${name}`)).arrayBuffer());
  const file = path.join(workDir!, `probe-${folder.replaceAll('/', '_')}-${uri}.mp4`);
  fs.writeFileSync(file, Buffer.concat([await bytes(init), await bytes(uri)]));
  return file;
}

describe('RTMP ingest to S3', () => {
  it('a valid key: master and variant playlists reach S3, renditions and keyframes check out, and ENDLIST follows the end', async () => {
    const { api } = await start();
    const issued = await api.streams.createKey('show');
    const started = Date.now();
    const publisher = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 12 });

    await eventually(
      async () => (await text('live/show/master.m3u8')) !== null,
      15_000,
      'the master playlist',
    );
    const firstMasterMs = Date.now() - started;
    const master = await existingText('live/show/master.m3u8');
    const found = variants(master);
    expect(found.map((variant) => variant.uri)).toEqual(['720p30/index.m3u8', '480p30/index.m3u8']);
    for (const variant of found) {
      expect(variant.attributes).toMatch(/BANDWIDTH=\d+/);
      expect(variant.attributes).toMatch(/RESOLUTION=\d+x\d+/);
      expect(variant.attributes).toMatch(/CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"/);
      expect(variant.attributes).toMatch(/FRAME-RATE=30/);
      const playlist = await existingText(`live/show/${variant.uri}`);
      expect(playlist).toContain('#EXT-X-PROGRAM-DATE-TIME:');
      expect(segmentUris(playlist).length).toBeGreaterThan(0);
    }
    expect(firstMasterMs).toBeLessThan(15_000);
    expect((await api.streams.channelStream('show')).stream?.state).toBe('live');
    // The ingest node is in the node registry, reporting the stream in its load.
    await eventually(
      async () => {
        // Listing nodes is for moderators: the operator token.
        const response = await fetch(`${api.baseUrl}/api/nodes`, { headers: operator() });
        const { nodes } = nodeListSchema.parse(await response.json());
        const ingestNode = nodes.find((node) => node.kind === 'ingest');
        return ingestNode?.status === 'up' && ingestNode.load.streams === 1;
      },
      5000,
      'the ingest node reporting one stream',
    );

    // The same playlists through a real nginx edge in front of the bucket.
    const edge = await startNginxEdge({ originUrl: s3!.endpoint, bucket: TEST_BUCKET });
    try {
      const viaEdge = await fetch(`${edge.url}/live/show/master.m3u8`);
      expect(viaEdge.status).toBe(200);
      expect(viaEdge.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
      expect(await viaEdge.text()).toBe(master);
      for (const variant of found) {
        const response = await fetch(`${edge.url}/live/show/${variant.uri}`);
        expect(response.status).toBe(200);
        expect(await response.text()).toContain('#EXTINF:');
      }
    } finally {
      await edge.stop();
    }

    expect(await exited(publisher)).toBe(0);
    for (const variant of found) {
      await eventually(
        async () => (await text(`live/show/${variant.uri}`))?.includes('#EXT-X-ENDLIST') ?? false,
        15_000,
        `ENDLIST in ${variant.uri}`,
      );
    }
    await eventually(
      async () => (await api.streams.channelStream('show')).stream?.state === 'ended',
      5000,
      'ended',
    );

    // The second segment of each rendition: right size, and keyframes at the same times.
    const probes = await Promise.all(
      found.map(async (variant) => {
        const playlist = await existingText(`live/show/${variant.uri}`);
        const uri = segmentUris(playlist)[1]!;
        return probeVideo(await download(`live/show/${path.dirname(variant.uri)}`, playlist, uri));
      }),
    );
    expect(probes.map(({ width, height }) => `${width}x${height}`)).toEqual([
      '1280x720',
      '854x480',
    ]);
    expect(probes[0]!.keyframePts.length).toBeGreaterThan(0);
    expect(probes[1]!.keyframePts).toHaveLength(probes[0]!.keyframePts.length);
    probes[1]!.keyframePts.forEach((pts, index) =>
      expect(pts).toBeCloseTo(probes[0]!.keyframePts[index]!, 1),
    );
  }, 60_000);

  it('an unknown key is refused at once: no transcode, nothing written', async () => {
    const { api } = await start();
    await api.streams.createKey('real');
    const publisher = publishLikeObs({
      url: rtmpUrl(`sk_${'0'.repeat(16)}_${'1'.repeat(64)}`),
      seconds: 10,
    });
    const code = await exited(publisher);
    expect(code).not.toBe(0);
    expect(await listKeys('')).toEqual([]);
    expect(fs.readdirSync(workDir!)).toEqual([]);
    expect(await api.streams.liveStreams()).toEqual([]);
  }, 30_000);

  it('a second publisher on a live key is refused and the first keeps streaming', async () => {
    const { api } = await start();
    const issued = await api.streams.createKey('dup');
    const first = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 14 });
    await eventually(
      async () => (await text('live/dup/master.m3u8')) !== null,
      15_000,
      'the first stream',
    );
    const second = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 5 });
    expect(await exited(second)).not.toBe(0);
    const before = segmentUris(await existingText('live/dup/720p30/index.m3u8')).at(-1);
    await eventually(
      async () => segmentUris((await text('live/dup/720p30/index.m3u8')) ?? '').at(-1) !== before,
      8000,
      'the first stream to keep producing segments',
    );
    expect(await api.streams.liveStreams()).toHaveLength(1);
    expect(await exited(first)).toBe(0);
  }, 60_000);

  it('rotating the key ends the live stream that used the old one', async () => {
    const { api } = await start();
    const issued = await api.streams.createKey('rot');
    const publisher = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 30 });
    await eventually(
      async () => (await text('live/rot/master.m3u8')) !== null,
      15_000,
      'the stream',
    );
    await api.streams.rotateKey('rot');
    expect(await exited(publisher)).not.toBe(0);
    await eventually(
      async () => (await text('live/rot/720p30/index.m3u8'))?.includes('#EXT-X-ENDLIST') ?? false,
      15_000,
      'ENDLIST after rotation',
    );
    expect((await api.streams.channelStream('rot')).stream?.state).toBe('ended');
  }, 60_000);

  it('a killed ffmpeg is restarted: a discontinuity is marked and segments keep coming', async () => {
    const { api } = await start();
    const issued = await api.streams.createKey('crash');
    const publisher = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 24 });
    await eventually(
      async () => (await text('live/crash/master.m3u8')) !== null,
      15_000,
      'the stream',
    );
    const streamId = (await api.streams.channelStream('crash')).stream!.id;
    const [pid] = await transcoderPids(streamId);
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    await eventually(
      async () => {
        const lines = ((await text('live/crash/720p30/index.m3u8')) ?? '').split('\n');
        const marker = lines.indexOf('#EXT-X-DISCONTINUITY');
        return marker >= 0 && segmentUris(lines.slice(marker).join('\n')).length >= 2;
      },
      25_000,
      'segments after a discontinuity',
    );
    expect(await transcoderPids(streamId)).not.toContain(pid);
    expect(await exited(publisher)).toBe(0);
  }, 60_000);

  it('S3 down for 10 s loses no segment', async () => {
    const { s3 } = await start({ keepVod: 'true' });
    const issued = await api!.streams.createKey('outage');
    const publisher = publishLikeObs({ url: rtmpUrl(issued.streamKey), seconds: 24 });
    await eventually(
      async () => (await text('live/outage/master.m3u8')) !== null,
      15_000,
      'the stream',
    );
    await s3.stop();
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    await s3.resume();
    expect(await exited(publisher)).toBe(0);
    await eventually(
      async () => (await text('live/outage/720p30/vod.m3u8')) !== null,
      30_000,
      'the VOD playlist',
    );

    for (const rendition of ['720p30', '480p30']) {
      const vod = await existingText(`live/outage/${rendition}/vod.m3u8`);
      expect(vod).toContain('#EXT-X-ENDLIST');
      const uris = segmentUris(vod);
      // Sequence numbers run without a gap, and every listed segment is in the bucket.
      expect(uris.length).toBeGreaterThan(0);
      const sequences = uris.map((uri) => Number(uri.match(/-(\d+)\.m4s$/)![1]));
      expect(sequences).toEqual(sequences.map((_, index) => index));
      const stored = new Set(await listKeys(`live/outage/${rendition}/`));
      for (const uri of uris) expect(stored.has(`live/outage/${rendition}/${uri}`)).toBe(true);
      const seconds = [...vod.matchAll(/#EXTINF:([\d.]+)/g)].reduce(
        (sum, match) => sum + Number(match[1]),
        0,
      );
      // 24 s were pushed; losing the 10 s outage would leave about 14 s. The margin covers a
      // slow start on a loaded machine.
      expect(seconds).toBeGreaterThan(16);
    }
  }, 90_000);
});
