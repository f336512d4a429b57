import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bridgeFeed, bridgeLadderSource, reserveBridgePorts } from '../src/bridge-input';
import type { SegmentReady } from '../src/hls-types';
import { Transcoder } from '../src/transcoder';
import { memoryLogger, probeSegment, waitFor, withInit } from './support/ffmpeg-fixtures';
import { SENT_OFFER, sendRtp } from './support/rtp-sender';

const run = promisify(execFile);

const offer = SENT_OFFER;

let tmp: string;
const cleanup: Array<() => unknown> = [];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bridge-'));
});

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('bridgeFeed()', () => {
  it('describes each stream in the clear on its port, with neither keys nor feedback, which the receiver in front of ffmpeg handles', () => {
    const key = Buffer.alloc(30, 7).toString('base64');
    const feed = bridgeFeed(
      {
        streams: [
          { ...offer.streams[0]!, srtpKeyBase64: key },
          { ...offer.streams[1]!, srtpKeyBase64: key },
        ],
      },
      { ip: '10.0.0.2', ports: [40_000, 40_002] },
      '10.0.0.1',
    );
    expect(feed.localAddress).toBe('10.0.0.2');
    expect(feed.audioStreams).toBe(1);
    expect(feed.sdp.split('\r\n')).toEqual([
      'v=0',
      'o=- 0 0 IN IP4 10.0.0.2',
      's=Hearth share bridge',
      'c=IN IP4 10.0.0.1',
      't=0 0',
      'm=video 40000 RTP/AVP 101',
      'a=rtpmap:101 VP8/90000',
      'm=audio 40002 RTP/AVP 100',
      'a=rtpmap:100 opus/48000/2',
      '',
    ]);
  });

  it('refuses a port count that does not match the streams, and addresses that are not IPv4', () => {
    expect(() => bridgeFeed(offer, { ip: '127.0.0.1', ports: [40_000] }, '127.0.0.1')).toThrow(
      '2 streams need as many ports, got 1',
    );
    expect(() =>
      bridgeFeed(offer, { ip: '127.0.0.1', ports: [40_000, 40_002] }, '127.0.0.1\r\na=x'),
    ).toThrow('bridge addresses must be IPv4 addresses');
    expect(() =>
      bridgeFeed(
        { streams: [offer.streams[0]!, { ...offer.streams[0]!, ssrc: 5 }] },
        { ip: '127.0.0.1', ports: [40_000, 40_002] },
        '127.0.0.1',
      ),
    ).toThrow('one stream per role');
  });
});

describe('bridgeLadderSource()', () => {
  const cap = { width: 1920, height: 1080, fps: 30 };

  it.each([
    ['no capture reported: the cap', undefined, cap],
    [
      'a smaller capture: the capture',
      { width: 1280, height: 720, fps: 30 },
      { width: 1280, height: 720, fps: 30 },
    ],
    ['a larger capture: the cap', { width: 2560, height: 1440, fps: 30 }, cap],
    ['a wider capture: the cap', { width: 3440, height: 1080, fps: 30 }, cap],
    [
      'a faster capture: the cap’s rate',
      { width: 1280, height: 720, fps: 60 },
      { width: 1280, height: 720, fps: 30 },
    ],
    ['a slower capture: its own rate', { width: 1920, height: 1080, fps: 15 }, { ...cap, fps: 15 }],
  ])('%s', (_, capture, expected) => {
    expect(bridgeLadderSource(cap, capture)).toEqual(expected);
  });
});

describe('reserveBridgePorts()', () => {
  it('finds even ports whose pair is free, and skips a pair that is taken', async () => {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(40_101, '127.0.0.1', resolve));
    cleanup.push(() => taken.close());
    // The range holds two pairs; the second one's RTCP port is taken.
    const ports = await reserveBridgePorts('127.0.0.1', 1, { min: 40_098, max: 40_101 });
    expect(ports).toEqual([40_098]);
    await expect(reserveBridgePorts('127.0.0.1', 2, { min: 40_098, max: 40_101 })).rejects.toThrow(
      'no free bridge ports in 40098-40101 on 127.0.0.1',
    );
  });
});

async function vp8Clip(name: string, size: string, seconds: number): Promise<string> {
  const file = path.join(tmp, `${name}.ivf`);
  await run('/usr/bin/ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
    ...['-i', `testsrc2=size=${size}:rate=30`, '-t', String(seconds)],
    ...['-c:v', 'libvpx', '-deadline', 'realtime', '-b:v', '800k', '-g', '30', '-y', file],
  ]);
  return file;
}

function startBridgeTranscoder(name: string, ports: number[]) {
  const { logger } = memoryLogger();
  const transcoder = new Transcoder({
    input: bridgeFeed(offer, { ip: '127.0.0.1', ports }, '127.0.0.1'),
    workDir: path.join(tmp, name),
    source: { width: 1280, height: 720, fps: 30 },
    segmentSeconds: 1,
    passthrough: false,
    logger,
  });
  cleanup.push(() => transcoder.stop());
  const segments: SegmentReady[] = [];
  const inits = new Map<string, Buffer>();
  const events: string[] = [];
  transcoder.events.on('init', (init) => inits.set(`${init.rendition} ${init.run}`, init.bytes));
  transcoder.events.on('segment', (segment) => segments.push(segment));
  transcoder.events.on('restarted', (attempt) => events.push(`restarted ${attempt}`));
  transcoder.events.on('failed', (error) => events.push(`failed ${error.message}`));
  transcoder.events.on('inputDamaged', () => events.push('inputDamaged'));
  // A segment as a player reads it, after its run's init segment.
  const playable = (segment: SegmentReady) =>
    withInit(inits.get(`${segment.rendition} ${segment.run}`)!, segment.localPath);
  return { transcoder, segments, events, playable };
}

const ofRung = (segments: SegmentReady[], rung: string) =>
  segments.filter((segment) => segment.rendition === rung);

describe('Transcoder on a bridge', () => {
  it('encodes RTP VP8 and Opus into the ladder, and a change of the source size neither restarts ffmpeg nor resizes a rung', async () => {
    const list = path.join(tmp, 'sizes.txt');
    const large = await vp8Clip('large', '1280x720', 3);
    const small = await vp8Clip('small', '640x360', 3);
    fs.writeFileSync(list, [large, small, large].map((file) => `file '${file}'`).join('\n'));
    const ports = await reserveBridgePorts('127.0.0.1', 2);
    const { transcoder, segments, events, playable } = startBridgeTranscoder('sizes', ports);
    const started = transcoder.start();
    const sent = sendRtp(ports, ['-f', 'concat', '-safe', '0', '-i', list], 9, cleanup);
    await started;
    const pid = transcoder.pid;
    await sent;
    await transcoder.stop();

    expect(events).toEqual([]);
    expect(transcoder.pid ?? pid).toBe(pid);
    expect(transcoder.renditions.map((rung) => rung.name)).toEqual(['720p30', '480p30']);
    // Segments of 1 s over the 9 s sent: the small part is in the middle of them.
    for (const [rung, width, height] of [
      ['720p30', 1280, 720],
      ['480p30', 854, 480],
    ] as const) {
      const own = ofRung(segments, rung);
      expect(own.length).toBeGreaterThanOrEqual(6);
      expect(new Set(own.map((segment) => segment.localPath.split(path.sep).at(-3)))).toEqual(
        new Set(['run-0']),
      );
      for (const segment of own) {
        const probed = await probeSegment(playable(segment));
        expect([probed.width, probed.height]).toEqual([width, height]);
      }
    }
  }, 60_000);

  it('restarts a killed ffmpeg on the same ports, which decodes again from the next key frame', async () => {
    const ports = await reserveBridgePorts('127.0.0.1', 2);
    const { transcoder, segments, events } = startBridgeTranscoder('killed', ports);
    const started = transcoder.start();
    sendRtp(ports, ['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'], 30, cleanup);
    await started;
    await waitFor('two segments', 15_000, () =>
      ofRung(segments, '720p30').length >= 2 ? true : undefined,
    );
    process.kill(transcoder.pid!, 'SIGKILL');
    await waitFor('the restart', 15_000, () => (events.length > 0 ? true : undefined));
    expect(events.filter((event) => event !== 'inputDamaged')).toEqual(['restarted 1']);
    await waitFor('segments of the second run', 15_000, () =>
      ofRung(segments, '720p30').some((segment) => segment.localPath.includes('run-1'))
        ? true
        : undefined,
    );
  }, 60_000);

  it('video packets lost on the way make ffmpeg say its input is damaged, which the transcoder reports (the bridge then asks for a key frame)', async () => {
    const ports = await reserveBridgePorts('127.0.0.1', 2);
    const { transcoder, events } = startBridgeTranscoder('lossy', ports);
    // The sender's video goes through a relay that loses one packet in 30; audio goes straight.
    const relay = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => relay.bind(0, '127.0.0.1', () => resolve()));
    cleanup.push(() => relay.close());
    let relayed = 0;
    relay.on('message', (packet) => {
      relayed += 1;
      if (relayed % 30 !== 0) relay.send(packet, ports[0]!, '127.0.0.1');
    });
    const started = transcoder.start();
    sendRtp(
      [relay.address().port, ports[1]!],
      ['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'],
      20,
      cleanup,
    );
    await started;
    await waitFor('ffmpeg to report damaged input', 20_000, () =>
      events.includes('inputDamaged') ? true : undefined,
    );
    expect(events.filter((event) => event !== 'inputDamaged')).toEqual([]);
  }, 60_000);
});
