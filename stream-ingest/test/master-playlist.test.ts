import { describe, expect, it } from 'vitest';
import { selectLadder } from '../src/ladder';
import { averageBandwidth, peakBandwidth, renderMasterPlaylist } from '../src/master-playlist';

interface Variant {
  attributes: Record<string, string>;
  uri: string;
}

// Splits EXT-X-STREAM-INF attributes on commas outside quotes, as RFC 8216 4.2 defines them.
function parseAttributes(list: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const match of list.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) {
    attributes[match[1]!] = match[2]!;
  }
  return attributes;
}

function parseMaster(text: string): { header: string[]; variants: Variant[] } {
  const lines = text.split('\n');
  expect(lines.pop()).toBe('');
  const header = lines.filter((l) => l.startsWith('#') && !l.startsWith('#EXT-X-STREAM-INF:'));
  const variants: Variant[] = [];
  lines.forEach((line, i) => {
    if (!line.startsWith('#EXT-X-STREAM-INF:')) return;
    variants.push({
      attributes: parseAttributes(line.slice('#EXT-X-STREAM-INF:'.length)),
      uri: lines[i + 1]!,
    });
  });
  return { header, variants };
}

describe('renderMasterPlaylist()', () => {
  it('renderMasterPlaylist() of a 1080p60 ladder lists every rung, highest first, with all attributes', () => {
    const { header, variants } = parseMaster(
      renderMasterPlaylist(selectLadder({ width: 1920, height: 1080, fps: 60 })),
    );
    expect(header).toEqual(['#EXTM3U', '#EXT-X-VERSION:6', '#EXT-X-INDEPENDENT-SEGMENTS']);
    expect(variants).toEqual([
      {
        // (7700 + 160) kbit/s peak and (7000 + 160) kbit/s average, plus 8 % MPEG-TS overhead.
        attributes: {
          BANDWIDTH: '8488800',
          'AVERAGE-BANDWIDTH': '7732800',
          RESOLUTION: '1920x1080',
          CODECS: '"avc1.64002a,mp4a.40.2"',
          'FRAME-RATE': '60.000',
        },
        uri: '1080p60/index.m3u8',
      },
      {
        attributes: {
          BANDWIDTH: '4924800',
          'AVERAGE-BANDWIDTH': '4492800',
          RESOLUTION: '1920x1080',
          CODECS: '"avc1.640028,mp4a.40.2"',
          'FRAME-RATE': '30.000',
        },
        uri: '1080p30/index.m3u8',
      },
      {
        attributes: {
          BANDWIDTH: '2514240',
          'AVERAGE-BANDWIDTH': '2298240',
          RESOLUTION: '1280x720',
          CODECS: '"avc1.64001f,mp4a.40.2"',
          'FRAME-RATE': '30.000',
        },
        uri: '720p30/index.m3u8',
      },
      {
        attributes: {
          BANDWIDTH: '1326240',
          'AVERAGE-BANDWIDTH': '1218240',
          RESOLUTION: '854x480',
          CODECS: '"avc1.64001f,mp4a.40.2"',
          'FRAME-RATE': '30.000',
        },
        uri: '480p30/index.m3u8',
      },
    ]);
  });

  it('renderMasterPlaylist() orders by bandwidth whatever order the renditions come in', () => {
    const ladder = selectLadder({ width: 1920, height: 1080, fps: 59.94 }, { passthrough: true });
    const { variants } = parseMaster(renderMasterPlaylist([...ladder].reverse()));
    const bandwidths = variants.map((v) => Number(v.attributes.BANDWIDTH));
    expect(bandwidths).toEqual([...bandwidths].sort((a, b) => b - a));
    // The copied source ties with the 1080p60 rung on bitrate and size; the original goes first.
    expect(variants.map((v) => [v.uri, v.attributes['FRAME-RATE']])).toEqual([
      ['source/index.m3u8', '59.940'],
      ['1080p60/index.m3u8', '59.940'],
      ['1080p30/index.m3u8', '29.970'],
      ['720p30/index.m3u8', '29.970'],
      ['480p30/index.m3u8', '29.970'],
    ]);
  });

  it('renderMasterPlaylist() of a portrait ladder writes width x height as encoded', () => {
    const { variants } = parseMaster(
      renderMasterPlaylist(selectLadder({ width: 1080, height: 1920, fps: 30 })),
    );
    expect(variants.map((v) => v.attributes.RESOLUTION)).toEqual([
      '1080x1920',
      '720x1280',
      '480x854',
    ]);
  });

  it('renderMasterPlaylist() of no renditions throws a TypeError', () => {
    expect(() => renderMasterPlaylist([])).toThrow(
      new TypeError('at least one rendition is needed'),
    );
  });
});

describe('peakBandwidth() and averageBandwidth()', () => {
  it('peakBandwidth() is above averageBandwidth() for every rung', () => {
    for (const rendition of selectLadder(
      { width: 1920, height: 1080, fps: 60 },
      { passthrough: true },
    )) {
      expect(peakBandwidth(rendition)).toBeGreaterThan(averageBandwidth(rendition));
    }
  });
});
