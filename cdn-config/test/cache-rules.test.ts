import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  cacheRuleFor,
  cacheRules,
  cacheRuleTableSchema,
  isCompressible,
  isImmutable,
  type CacheRule,
} from '../src/cache-rules';

function ruleNamed(name: string): CacheRule {
  const rule = cacheRules.find((candidate) => candidate.name === name);
  if (!rule) throw new Error(`no rule ${name}`);
  return rule;
}

describe('cacheRuleFor()', () => {
  it('cacheRuleFor() on a master playlist returns the uncached no-cache rule', () => {
    expect(cacheRuleFor('live/chan-1/master.m3u8')).toEqual({
      name: 'master-playlist',
      suffix: 'master.m3u8',
      contentType: 'application/vnd.apple.mpegurl',
      cacheControl: 'no-cache',
      edgeTtlSeconds: 0,
    });
  });

  it('cacheRuleFor() on a media playlist returns the one-second rule', () => {
    expect(cacheRuleFor('live/chan-1/720p/index.m3u8')).toEqual({
      name: 'media-playlist',
      suffix: '.m3u8',
      contentType: 'application/vnd.apple.mpegurl',
      cacheControl: 'public, max-age=1',
      edgeTtlSeconds: 1,
    });
  });

  it('cacheRuleFor() on a .ts segment returns the immutable video/mp2t rule', () => {
    const rule = cacheRuleFor('live/chan-1/720p/3f2a-000042.ts');
    expect(rule?.name).toBe('ts-segment');
    expect(rule?.contentType).toBe('video/mp2t');
    expect(rule?.cacheControl).toBe('public, max-age=31536000, immutable');
    expect(rule?.edgeTtlSeconds).toBe(31_536_000);
  });

  it('cacheRuleFor() on an .m4s segment returns the immutable video/iso.segment rule', () => {
    const rule = cacheRuleFor('live/chan-1/1080p/3f2a-000042.m4s');
    expect(rule?.name).toBe('fmp4-segment');
    expect(rule?.contentType).toBe('video/iso.segment');
    expect(rule?.edgeTtlSeconds).toBe(31_536_000);
  });

  it('cacheRuleFor() on an fMP4 init .mp4 returns the immutable video/mp4 rule', () => {
    const rule = cacheRuleFor('live/chan-1/1080p/init.mp4');
    expect(rule?.name).toBe('fmp4-init');
    expect(rule?.contentType).toBe('video/mp4');
    expect(rule?.cacheControl).toContain('immutable');
  });

  it('cacheRuleFor() on an unknown or suffix-less key returns undefined', () => {
    expect(cacheRuleFor('live/chan-1/thumbnail.jpg')).toBeUndefined();
    expect(cacheRuleFor('live/chan-1/master.m3u8.bak')).toBeUndefined();
    expect(cacheRuleFor('')).toBeUndefined();
  });
});

describe('cacheRules', () => {
  it('cacheRules puts the master-playlist rule before the generic .m3u8 rule', () => {
    const names = cacheRules.map((rule) => rule.name);
    expect(names.indexOf('master-playlist')).toBeGreaterThanOrEqual(0);
    expect(names.indexOf('master-playlist')).toBeLessThan(names.indexOf('media-playlist'));
  });

  it('cacheRules gives every rule a content type and a Cache-Control value', () => {
    for (const rule of cacheRules) {
      expect(rule.contentType, rule.name).toMatch(/^[a-z]+\/[a-z0-9.+-]+$/);
      expect(rule.cacheControl, rule.name).not.toBe('');
    }
  });

  it('cacheRules passes cacheRuleTableSchema (unique names, no shadowed suffix)', () => {
    expect(cacheRuleTableSchema.safeParse(cacheRules).success).toBe(true);
  });

  it('cacheRules pairs every immutable Cache-Control with a year at the edge', () => {
    for (const rule of cacheRules.filter(isImmutable)) {
      expect(rule.edgeTtlSeconds, rule.name).toBe(31_536_000);
    }
  });
});

describe('cacheRuleTableSchema', () => {
  it('cacheRuleTableSchema on a generic rule placed before a specific one reports the shadowing', () => {
    const swapped = [ruleNamed('media-playlist'), ruleNamed('master-playlist')];
    const result = cacheRuleTableSchema.safeParse(swapped);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => issue.message)).toEqual([
      '"master.m3u8" is shadowed by the earlier rule media-playlist',
    ]);
  });

  it('cacheRuleTableSchema on duplicate names, an empty table, or a bad TTL fails', () => {
    const ts = ruleNamed('ts-segment');
    expect(cacheRuleTableSchema.safeParse([ts, { ...ts, suffix: '.aac' }]).success).toBe(false);
    expect(cacheRuleTableSchema.safeParse([]).success).toBe(false);
    expect(cacheRuleTableSchema.safeParse([{ ...ts, edgeTtlSeconds: -1 }]).success).toBe(false);
    expect(cacheRuleTableSchema.safeParse([{ ...ts, contentType: 'video/mp2t; x' }]).success).toBe(
      false,
    );
  });
});

describe('isImmutable() and isCompressible()', () => {
  it('isImmutable() is true for segments and init files only', () => {
    expect(cacheRules.filter(isImmutable).map((rule) => rule.name)).toEqual([
      'ts-segment',
      'fmp4-segment',
      'fmp4-init',
    ]);
  });

  it('isCompressible() is true for playlists only', () => {
    expect(cacheRules.filter(isCompressible).map((rule) => rule.name)).toEqual([
      'master-playlist',
      'media-playlist',
    ]);
  });
});

describe('README.md', () => {
  it('README.md cache policy table lists every rule with its current values', () => {
    const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const rows = readme
      .split('\n')
      .filter((line) => /^\| `[a-z0-9-]+`\s+\| `\*/.test(line))
      .map((line) =>
        line
          .split('|')
          .slice(1, 6)
          .map((cell) => cell.trim().replace(/`/g, '')),
      );
    expect(rows).toEqual(
      cacheRules.map((rule) => [
        rule.name,
        `*${rule.suffix}`,
        rule.contentType,
        rule.cacheControl,
        rule.edgeTtlSeconds === 0 ? '0 (bypass)' : String(rule.edgeTtlSeconds),
      ]),
    );
  });
});
