import { describe, expect, it } from 'vitest';
import { parseMediaPlaylist, PlaylistParseError } from '../src/media-playlist-parser';

// Written by Debian's ffmpeg 5.1 with -hls_time 2 -hls_list_size 6
// -hls_flags independent_segments+program_date_time+temp_file, while the stream runs.
const LIVE_WINDOW = `#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:5
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:17:59.586+0000
seg_00005.ts
#EXTINF:2.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:18:01.586+0000
seg_00006.ts
#EXTINF:2.002000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:18:03.586+0000
seg_00007.ts
`;

// The same muxer after `q`: a short last segment and EXT-X-ENDLIST.
const FINISHED = `#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:14:09.317+0000
seg_00000.ts
#EXTINF:0.833333,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:14:11.317+0000
seg_00001.ts
#EXT-X-ENDLIST
`;

describe('parseMediaPlaylist()', () => {
  it.each([
    [
      'a live window numbers segments from EXT-X-MEDIA-SEQUENCE',
      LIVE_WINDOW,
      {
        mediaSequence: 5,
        targetDurationSec: 2,
        endList: false,
        segments: [
          {
            uri: 'seg_00005.ts',
            durationSec: 2,
            programDateTime: new Date('2026-11-21T08:17:59.586Z'),
            discontinuity: false,
            sequence: 5,
          },
          {
            uri: 'seg_00006.ts',
            durationSec: 2,
            programDateTime: new Date('2026-11-21T08:18:01.586Z'),
            discontinuity: false,
            sequence: 6,
          },
          {
            uri: 'seg_00007.ts',
            durationSec: 2.002,
            programDateTime: new Date('2026-11-21T08:18:03.586Z'),
            discontinuity: false,
            sequence: 7,
          },
        ],
      },
    ],
    [
      'a finished playlist reports ENDLIST and its short last segment',
      FINISHED,
      {
        mediaSequence: 0,
        targetDurationSec: 2,
        endList: true,
        segments: [
          {
            uri: 'seg_00000.ts',
            durationSec: 2,
            programDateTime: new Date('2026-11-21T08:14:09.317Z'),
            discontinuity: false,
            sequence: 0,
          },
          {
            uri: 'seg_00001.ts',
            durationSec: 0.833333,
            programDateTime: new Date('2026-11-21T08:14:11.317Z'),
            discontinuity: false,
            sequence: 1,
          },
        ],
      },
    ],
    [
      'a discontinuity, a missing date carried forward, CRLF and other offsets',
      [
        '#EXTM3U',
        '#EXT-X-TARGETDURATION:2',
        '#EXTINF:2.0,first',
        '#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00.000+02:00',
        'a.ts',
        '#EXTINF:1.5,',
        'b.ts',
        '#EXT-X-DISCONTINUITY',
        '#EXTINF:2,',
        '#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:00:10Z',
        'c.ts',
        '',
      ].join('\r\n'),
      {
        mediaSequence: 0,
        targetDurationSec: 2,
        endList: false,
        segments: [
          {
            uri: 'a.ts',
            durationSec: 2,
            programDateTime: new Date('2026-11-21T08:00:00.000Z'),
            discontinuity: false,
            sequence: 0,
          },
          {
            uri: 'b.ts',
            durationSec: 1.5,
            programDateTime: new Date('2026-11-21T08:00:02.000Z'),
            discontinuity: false,
            sequence: 1,
          },
          {
            uri: 'c.ts',
            durationSec: 2,
            programDateTime: new Date('2026-11-21T08:00:10.000Z'),
            discontinuity: true,
            sequence: 2,
          },
        ],
      },
    ],
    [
      'a playlist without dates leaves programDateTime undefined',
      '#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000000,\nseg_00003.ts\n',
      {
        mediaSequence: 3,
        targetDurationSec: undefined,
        endList: false,
        segments: [
          {
            uri: 'seg_00003.ts',
            durationSec: 2,
            programDateTime: undefined,
            discontinuity: false,
            sequence: 3,
          },
        ],
      },
    ],
    [
      'an empty playlist (ffmpeg before its first segment) has no segments',
      '#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n',
      { mediaSequence: 0, targetDurationSec: 2, endList: false, segments: [] },
    ],
  ])('parseMediaPlaylist() of %s', (_title, text, expected) => {
    expect(parseMediaPlaylist(text)).toEqual(expected);
  });

  // prettier-ignore
  it.each([
    ['no #EXTM3U', 'seg.ts\n', 'line 1: missing #EXTM3U'],
    ['a segment without EXTINF', '#EXTM3U\nseg.ts\n', 'line 2: segment "seg.ts" has no #EXTINF'],
    ['a bad duration', '#EXTM3U\n#EXTINF:abc,\nseg.ts\n', 'line 2: #EXTINF needs a non-negative number, got "abc"'],
    ['a bad date', '#EXTM3U\n#EXTINF:2,\n#EXT-X-PROGRAM-DATE-TIME:yesterday\ns.ts\n', 'line 3: invalid EXT-X-PROGRAM-DATE-TIME "yesterday"'],
    ['month 13', '#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2026-13-01T00:00:00Z\n', 'line 2: invalid EXT-X-PROGRAM-DATE-TIME "2026-13-01T00:00:00Z"'],
    ['a late media sequence', '#EXTM3U\n#EXTINF:2,\ns.ts\n#EXT-X-MEDIA-SEQUENCE:4\n', 'line 4: EXT-X-MEDIA-SEQUENCE after the first segment'],
  ])('parseMediaPlaylist() of %s throws PlaylistParseError', (_title, text, message) => {
    expect(() => parseMediaPlaylist(text)).toThrow(PlaylistParseError);
    expect(() => parseMediaPlaylist(text)).toThrow(message);
  });
});
