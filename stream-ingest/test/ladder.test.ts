import { describe, expect, it } from 'vitest';
import type { Rendition } from '../src/hls-types';
import {
  choosePreset,
  codecsString,
  costliestRung,
  h264LevelIdc,
  maxrateKbps,
  nextAdaptation,
  selectLadder,
  type EncodingPlan,
  type SourceInfo,
} from '../src/ladder';

// name, width, height, fps of each rendition, highest first.
type Shape = [string, number, number, number];

function shapes(renditions: readonly Rendition[]): Shape[] {
  return renditions.map((r) => [r.name, r.width, r.height, r.fps]);
}

describe('selectLadder()', () => {
  const cases: [string, SourceInfo, Shape[]][] = [
    [
      '3840x2160@60 gets the four rungs, downscaled',
      { width: 3840, height: 2160, fps: 60 },
      [
        ['1080p60', 1920, 1080, 60],
        ['1080p30', 1920, 1080, 30],
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '1920x1080@60 gets all four rungs',
      { width: 1920, height: 1080, fps: 60 },
      [
        ['1080p60', 1920, 1080, 60],
        ['1080p30', 1920, 1080, 30],
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '1920x1080@59.94 keeps the 60 fps rung at 59.94 and halves to 29.97',
      { width: 1920, height: 1080, fps: 59.94 },
      [
        ['1080p60', 1920, 1080, 59.94],
        ['1080p30', 1920, 1080, 29.97],
        ['720p30', 1280, 720, 29.97],
        ['480p30', 854, 480, 29.97],
      ],
    ],
    [
      '1920x1080@30 drops the 60 fps rung',
      { width: 1920, height: 1080, fps: 30 },
      [
        ['1080p30', 1920, 1080, 30],
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '1920x1080@29.97 keeps its own rate on every rung',
      { width: 1920, height: 1080, fps: 29.97 },
      [
        ['1080p30', 1920, 1080, 29.97],
        ['720p30', 1280, 720, 29.97],
        ['480p30', 854, 480, 29.97],
      ],
    ],
    [
      '1280x720@60 keeps its motion in a 720p60 top rung',
      { width: 1280, height: 720, fps: 60 },
      [
        ['720p60', 1280, 720, 60],
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '1280x720@59.94 counts as 60 fps',
      { width: 1280, height: 720, fps: 59.94 },
      [
        ['720p60', 1280, 720, 59.94],
        ['720p30', 1280, 720, 29.97],
        ['480p30', 854, 480, 29.97],
      ],
    ],
    [
      '1280x720@30 gets 720p30 and 480p30',
      { width: 1280, height: 720, fps: 30 },
      [
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '1366x768@30 is scaled down to the 720p rung, not kept at 768p',
      { width: 1366, height: 768, fps: 30 },
      [
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
    [
      '854x480@30 gets the single 480p rung',
      { width: 854, height: 480, fps: 30 },
      [['480p30', 854, 480, 30]],
    ],
    [
      '640x360@30, below the lowest rung, gets one rung at its own size',
      { width: 640, height: 360, fps: 30 },
      [['360p30', 640, 360, 30]],
    ],
    [
      '426x240@60, below the lowest rung, gets one rung at 30 fps',
      { width: 426, height: 240, fps: 60 },
      [['240p30', 426, 240, 30]],
    ],
    [
      '1080x1920 portrait measures rungs on its short side',
      { width: 1080, height: 1920, fps: 30 },
      [
        ['1080p30', 1080, 1920, 30],
        ['720p30', 720, 1280, 30],
        ['480p30', 480, 854, 30],
      ],
    ],
    [
      '1440x1080 (4:3) keeps its aspect ratio with even widths',
      { width: 1440, height: 1080, fps: 30 },
      [
        ['1080p30', 1440, 1080, 30],
        ['720p30', 960, 720, 30],
        ['480p30', 640, 480, 30],
      ],
    ],
    [
      '1920x1080@50 divides evenly: 50 and 25 fps',
      { width: 1920, height: 1080, fps: 50 },
      [
        ['1080p50', 1920, 1080, 50],
        ['1080p25', 1920, 1080, 25],
        ['720p25', 1280, 720, 25],
        ['480p25', 854, 480, 25],
      ],
    ],
    [
      '2560x1440@120 divides to 60 and 30 fps',
      { width: 2560, height: 1440, fps: 120 },
      [
        ['1080p60', 1920, 1080, 60],
        ['1080p30', 1920, 1080, 30],
        ['720p30', 1280, 720, 30],
        ['480p30', 854, 480, 30],
      ],
    ],
  ];

  it.each(cases)('selectLadder(%s)', (_title, source, expected) => {
    expect(shapes(selectLadder(source))).toEqual(expected);
  });

  it('selectLadder() with passthrough puts a copied "source" rendition first', () => {
    const ladder = selectLadder({ width: 1280, height: 720, fps: 30 }, { passthrough: true });
    expect(shapes(ladder)).toEqual([
      ['source', 1280, 720, 30],
      ['720p30', 1280, 720, 30],
      ['480p30', 854, 480, 30],
    ]);
    expect(ladder.map((r) => r.passthrough)).toEqual([true, false, false]);
  });

  it('selectLadder() without passthrough encodes every rendition', () => {
    const ladder = selectLadder({ width: 1920, height: 1080, fps: 60 }, { passthrough: false });
    expect(ladder.every((r) => !r.passthrough)).toBe(true);
  });

  it('selectLadder() with passthrough uses the announced source bitrate and its level', () => {
    const [source] = selectLadder(
      { width: 3840, height: 2160, fps: 60, videoBitrateKbps: 20_000 },
      { passthrough: true },
    );
    expect(source).toEqual({
      name: 'source',
      width: 3840,
      height: 2160,
      fps: 60,
      videoBitrateKbps: 20_000,
      audioBitrateKbps: 160,
      codecs: 'avc1.640034,mp4a.40.2',
      passthrough: true,
    });
  });

  it('selectLadder() on 1080p60 gives the issue bitrates and levels per rung', () => {
    const ladder = selectLadder({ width: 1920, height: 1080, fps: 60 });
    expect(ladder.map((r) => [r.name, r.videoBitrateKbps, r.audioBitrateKbps, r.codecs])).toEqual([
      ['1080p60', 7000, 160, 'avc1.64002a,mp4a.40.2'],
      ['1080p30', 4000, 160, 'avc1.640028,mp4a.40.2'],
      ['720p30', 2000, 128, 'avc1.64001f,mp4a.40.2'],
      // 854x480 is 1620 macroblocks; at 30 fps that is 48600/s, over level 3.0's 40500.
      ['480p30', 1000, 128, 'avc1.64001f,mp4a.40.2'],
    ]);
  });

  it('selectLadder() scales bitrates with the pixel rate for other shapes and rates', () => {
    const fourByThree = selectLadder({ width: 1440, height: 1080, fps: 30 });
    expect(fourByThree.map((r) => r.videoBitrateKbps)).toEqual([3200, 1600, 800]);
    const small = selectLadder({ width: 640, height: 360, fps: 30 });
    expect(small.map((r) => [r.videoBitrateKbps, r.codecs])).toEqual([
      [650, 'avc1.64001e,mp4a.40.2'],
    ]);
  });

  it('selectLadder() caps every rung at the bitrate the publisher sends', () => {
    const ladder = selectLadder({ width: 1920, height: 1080, fps: 60, videoBitrateKbps: 3000 });
    expect(ladder.map((r) => r.videoBitrateKbps)).toEqual([3000, 3000, 2000, 1000]);
  });

  it('selectLadder() with maxRungs keeps the highest renditions', () => {
    const ladder = selectLadder(
      { width: 1920, height: 1080, fps: 60 },
      { passthrough: true, maxRungs: 2 },
    );
    expect(ladder.map((r) => r.name)).toEqual(['source', '1080p60']);
  });

  it.each([
    [{ width: 0, height: 1080, fps: 30 }, 'source width must be a positive number, got 0'],
    [{ width: 1920, height: -1, fps: 30 }, 'source height must be a positive number, got -1'],
    [{ width: 1920, height: 1080, fps: NaN }, 'source fps must be a positive number, got NaN'],
    [
      { width: 1920, height: 1080, fps: 30, videoBitrateKbps: 0 },
      'source videoBitrateKbps must be a positive number, got 0',
    ],
  ])('selectLadder(%o) throws a RangeError', (source, message) => {
    expect(() => selectLadder(source)).toThrow(new RangeError(message));
  });

  it('selectLadder() with maxRungs 0 throws a RangeError', () => {
    expect(() => selectLadder({ width: 1920, height: 1080, fps: 30 }, { maxRungs: 0 })).toThrow(
      new RangeError('maxRungs must be a positive integer, got 0'),
    );
  });
});

describe('h264LevelIdc() and codecsString()', () => {
  it.each([
    [1920, 1080, 60, 7700, 42],
    [1920, 1080, 30, 4400, 40],
    [1280, 720, 60, 3850, 32],
    [1280, 720, 30, 2200, 31],
    [854, 480, 30, 1100, 31],
    [720, 480, 30, 1100, 30],
    [640, 360, 30, 715, 30],
    [1080, 1920, 30, 4400, 40],
    [3840, 2160, 60, 22_000, 52],
    // 30 Mbit/s at 1080p30 is over level 4.0's 25 Mbit/s (High profile) and needs 4.1.
    [1920, 1080, 30, 30_000, 41],
  ])('h264LevelIdc(%i, %i, %f, %i) is %i', (width, height, fps, peak, level) => {
    expect(h264LevelIdc(width, height, fps, peak)).toBe(level);
  });

  it.each([
    [42, 'avc1.64002a,mp4a.40.2'],
    [40, 'avc1.640028,mp4a.40.2'],
    [31, 'avc1.64001f,mp4a.40.2'],
    [30, 'avc1.64001e,mp4a.40.2'],
  ])('codecsString(%i) is %s', (level, codecs) => {
    expect(codecsString(level)).toBe(codecs);
  });
});

describe('choosePreset()', () => {
  it.each([
    [{ width: 1920, height: 1080, fps: 60 }, false, 4, 'superfast'],
    [{ width: 1920, height: 1080, fps: 60 }, false, 2, 'ultrafast'],
    [{ width: 1920, height: 1080, fps: 50 }, false, 8, 'superfast'],
    [{ width: 1920, height: 1080, fps: 30 }, false, 2, 'veryfast'],
    [{ width: 1280, height: 720, fps: 60 }, false, 2, 'veryfast'],
    [{ width: 1280, height: 720, fps: 30 }, true, 2, 'veryfast'],
  ] as const)(
    'choosePreset(ladder of %o, passthrough %s, %i cores) is %s',
    (source, passthrough, cores, preset) => {
      expect(choosePreset(selectLadder(source, { passthrough }), cores)).toBe(preset);
    },
  );

  it('choosePreset() ignores a copied 1080p60 source rendition', () => {
    const ladder = selectLadder({ width: 1920, height: 1080, fps: 60 }, { passthrough: true });
    expect(
      choosePreset(
        ladder.filter((r) => r.name !== '1080p60'),
        2,
      ),
    ).toBe('veryfast');
  });
});

describe('nextAdaptation()', () => {
  it('nextAdaptation() steps the preset to ultrafast first, then drops the costliest rungs', () => {
    const renditions = selectLadder({ width: 1920, height: 1080, fps: 60 }, { passthrough: true });
    let plan: EncodingPlan = { preset: 'veryfast', renditions };
    const steps: [string, string, string[]][] = [];
    for (let next = nextAdaptation(plan); next; next = nextAdaptation(plan)) {
      steps.push([next.change, next.preset, next.renditions.map((r) => r.name)]);
      plan = next;
    }
    expect(steps).toEqual([
      [
        'preset veryfast -> superfast',
        'superfast',
        ['source', '1080p60', '1080p30', '720p30', '480p30'],
      ],
      [
        'preset superfast -> ultrafast',
        'ultrafast',
        ['source', '1080p60', '1080p30', '720p30', '480p30'],
      ],
      ['dropped rung 1080p60', 'ultrafast', ['source', '1080p30', '720p30', '480p30']],
      ['dropped rung 1080p30', 'ultrafast', ['source', '720p30', '480p30']],
      ['dropped rung 720p30', 'ultrafast', ['source', '480p30']],
    ]);
  });

  it('nextAdaptation() of ultrafast with one encoded rung is null', () => {
    const renditions = selectLadder({ width: 854, height: 480, fps: 30 });
    expect(nextAdaptation({ preset: 'ultrafast', renditions })).toBeNull();
  });
});

describe('costliestRung() and maxrateKbps()', () => {
  it('costliestRung() picks the most pixels per second and never a copied rendition', () => {
    const ladder = selectLadder({ width: 3840, height: 2160, fps: 60 }, { passthrough: true });
    expect(costliestRung(ladder)?.name).toBe('1080p60');
    expect(costliestRung(ladder.filter((r) => r.passthrough))).toBeUndefined();
  });

  it('maxrateKbps() is 110 % of the target bitrate', () => {
    const [top] = selectLadder({ width: 1920, height: 1080, fps: 30 });
    expect(maxrateKbps(top!)).toBe(4400);
  });
});
