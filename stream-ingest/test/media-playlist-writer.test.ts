import { describe, expect, it } from 'vitest';
import {
  renderMediaPlaylist,
  targetDurationFor,
  type MediaPlaylist,
  type PlaylistSegment,
} from '../src/media-playlist-writer';

const T0 = Date.parse('2025-01-01T12:00:00.000Z');

function segment(
  index: number,
  options: { durationSec?: number; discontinuity?: boolean } = {},
): PlaylistSegment {
  return {
    uri: `s1-${index}.ts`,
    durationSec: options.durationSec ?? 2,
    programDateTime: new Date(T0 + index * 2000),
    discontinuity: options.discontinuity ?? false,
  };
}

function lines(playlist: MediaPlaylist): string[] {
  const text = renderMediaPlaylist(playlist);
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

const live = {
  targetDuration: 2,
  mediaSequence: 0,
  discontinuitySequence: 0,
  ended: false,
} as const;

describe('renderMediaPlaylist()', () => {
  it.each<{ name: string; playlist: MediaPlaylist; expected: string[] }>([
    {
      name: 'a live window lists header tags, then PDT, EXTINF and URI per segment',
      playlist: { ...live, mediaSequence: 10, segments: [segment(10), segment(11)] },
      expected: [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:10',
        '#EXT-X-DISCONTINUITY-SEQUENCE:0',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:20.000Z',
        '#EXTINF:2.000,',
        's1-10.ts',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:22.000Z',
        '#EXTINF:2.000,',
        's1-11.ts',
      ],
    },
    {
      name: 'a flagged segment gets EXT-X-DISCONTINUITY before its tags; the sequence is as given',
      playlist: {
        ...live,
        mediaSequence: 4,
        discontinuitySequence: 2,
        segments: [segment(4), segment(5, { discontinuity: true })],
      },
      expected: [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:4',
        '#EXT-X-DISCONTINUITY-SEQUENCE:2',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:08.000Z',
        '#EXTINF:2.000,',
        's1-4.ts',
        '#EXT-X-DISCONTINUITY',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:10.000Z',
        '#EXTINF:2.000,',
        's1-5.ts',
      ],
    },
    {
      name: 'an ended live playlist closes with EXT-X-ENDLIST',
      playlist: { ...live, mediaSequence: 7, ended: true, segments: [segment(7)] },
      expected: [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:7',
        '#EXT-X-DISCONTINUITY-SEQUENCE:0',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:14.000Z',
        '#EXTINF:2.000,',
        's1-7.ts',
        '#EXT-X-ENDLIST',
      ],
    },
    {
      name: 'a VOD playlist has EXT-X-PLAYLIST-TYPE:VOD and EXT-X-ENDLIST',
      playlist: {
        ...live,
        ended: true,
        playlistType: 'VOD',
        segments: [segment(0), segment(1, { durationSec: 1.5 })],
      },
      expected: [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:0',
        '#EXT-X-DISCONTINUITY-SEQUENCE:0',
        '#EXT-X-PLAYLIST-TYPE:VOD',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:00.000Z',
        '#EXTINF:2.000,',
        's1-0.ts',
        '#EXT-X-PROGRAM-DATE-TIME:2025-01-01T12:00:02.000Z',
        '#EXTINF:1.500,',
        's1-1.ts',
        '#EXT-X-ENDLIST',
      ],
    },
    {
      name: 'an empty playlist has only its header',
      playlist: { ...live, segments: [] },
      expected: [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:0',
        '#EXT-X-DISCONTINUITY-SEQUENCE:0',
        '#EXT-X-INDEPENDENT-SEGMENTS',
      ],
    },
  ])('$name', ({ playlist, expected }) => {
    expect(lines(playlist)).toEqual(expected);
  });

  it.each([
    { durationSec: 2.0004, extinf: '#EXTINF:2.000,', target: 2 },
    { durationSec: 2.0005, extinf: '#EXTINF:2.001,', target: 3 },
    { durationSec: 1.23456, extinf: '#EXTINF:1.235,', target: 2 },
    { durationSec: 4.2, extinf: '#EXTINF:4.200,', target: 5 },
  ])(
    'a $durationSec s segment is written as "$extinf" with target duration $target',
    ({ durationSec, extinf, target }) => {
      const written = lines({ ...live, segments: [segment(0, { durationSec })] });
      expect(written).toContain(extinf);
      expect(written).toContain(`#EXT-X-TARGETDURATION:${target}`);
    },
  );

  it.each<{ name: string; playlist: MediaPlaylist; message: RegExp }>([
    {
      name: 'a negative media sequence',
      playlist: { ...live, mediaSequence: -1, segments: [] },
      message: /mediaSequence must be a non-negative integer/,
    },
    {
      name: 'a fractional discontinuity sequence',
      playlist: { ...live, discontinuitySequence: 1.5, segments: [] },
      message: /discontinuitySequence must be a non-negative integer/,
    },
    {
      name: 'a zero duration',
      playlist: { ...live, segments: [segment(0, { durationSec: 0 })] },
      message: /segment 0: durationSec must be > 0/,
    },
    {
      name: 'a URI with a line break',
      playlist: { ...live, segments: [{ ...segment(0), uri: 'a.ts\n#EXT-X-ENDLIST' }] },
      message: /segment 0: uri must be one non-empty line/,
    },
    {
      name: 'an invalid date',
      playlist: { ...live, segments: [{ ...segment(0), programDateTime: new Date(Number.NaN) }] },
      message: /segment 0: programDateTime is not a valid date/,
    },
  ])('renderMediaPlaylist() with $name throws a TypeError', ({ playlist, message }) => {
    expect(() => renderMediaPlaylist(playlist)).toThrow(TypeError);
    expect(() => renderMediaPlaylist(playlist)).toThrow(message);
  });
});

describe('targetDurationFor()', () => {
  it.each([
    { minimum: 0, durations: [], expected: 1 },
    { minimum: 0, durations: [1.9, 2.1], expected: 3 },
    { minimum: 6, durations: [2, 2], expected: 6 },
    { minimum: 2, durations: [2, 2.0001], expected: 2 },
  ])(
    'minimum $minimum with durations $durations gives $expected',
    ({ minimum, durations, expected }) => {
      const segments = durations.map((durationSec, index) => segment(index, { durationSec }));
      expect(targetDurationFor(minimum, segments)).toBe(expected);
    },
  );
});
