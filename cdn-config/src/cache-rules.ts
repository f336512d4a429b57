import { z } from 'zod';

/** How one kind of HLS object is typed and cached, at the origin and at the edge. */
export interface CacheRule {
  /** Rule name, used in generated configs. */
  readonly name: string;
  /** File name suffix the rule applies to; the first matching rule wins. */
  readonly suffix: string;
  /** Content-Type stored with the object and served to players. */
  readonly contentType: string;
  /** Cache-Control stored with the object and served to players. */
  readonly cacheControl: string;
  /** How long the edge keeps the object, in seconds; 0 means it always asks the origin. */
  readonly edgeTtlSeconds: number;
}

// Live media playlists change every segment (2 s by default). One second at the edge lets a
// crowd share one origin fetch. nginx counts expiry in whole seconds, so its edge keeps such a
// playlist for 1 to 2 s: a player there can be up to one segment behind, never more.
const LIVE_PLAYLIST_TTL_SECONDS = 1;
// Segment names carry the stream id and sequence number, so a name is never reused and its bytes
// never change: a year is the longest lifetime HTTP caches honour.
const IMMUTABLE_TTL_SECONDS = 31_536_000;

/** The one table of cache rules, most specific first. */
export const cacheRules: readonly CacheRule[] = [
  {
    name: 'master-playlist',
    suffix: 'master.m3u8',
    contentType: 'application/vnd.apple.mpegurl',
    cacheControl: 'no-cache',
    edgeTtlSeconds: 0,
  },
  {
    name: 'media-playlist',
    suffix: '.m3u8',
    contentType: 'application/vnd.apple.mpegurl',
    cacheControl: `public, max-age=${LIVE_PLAYLIST_TTL_SECONDS}`,
    edgeTtlSeconds: LIVE_PLAYLIST_TTL_SECONDS,
  },
  {
    name: 'ts-segment',
    suffix: '.ts',
    contentType: 'video/mp2t',
    cacheControl: `public, max-age=${IMMUTABLE_TTL_SECONDS}, immutable`,
    edgeTtlSeconds: IMMUTABLE_TTL_SECONDS,
  },
  {
    name: 'fmp4-segment',
    suffix: '.m4s',
    contentType: 'video/iso.segment',
    cacheControl: `public, max-age=${IMMUTABLE_TTL_SECONDS}, immutable`,
    edgeTtlSeconds: IMMUTABLE_TTL_SECONDS,
  },
  {
    name: 'fmp4-init',
    suffix: '.mp4',
    contentType: 'video/mp4',
    cacheControl: `public, max-age=${IMMUTABLE_TTL_SECONDS}, immutable`,
    edgeTtlSeconds: IMMUTABLE_TTL_SECONDS,
  },
];

/** The rule for an object key, or undefined when no HLS rule applies. */
export function cacheRuleFor(key: string): CacheRule | undefined {
  return cacheRules.find((rule) => key.endsWith(rule.suffix));
}

/** The rule of a table with this name; throws when the table has none (a generator's bug). */
export function cacheRuleNamed(rules: readonly CacheRule[], name: string): CacheRule {
  const rule = rules.find((candidate) => candidate.name === name);
  if (!rule) throw new TypeError(`the cache rule table has no ${name} rule`);
  return rule;
}

// The values end up inside nginx and CloudFront configs, so they are held to a strict character
// set that needs no quoting or escaping there.
/** Schema one cache rule must satisfy before a config is generated from it. */
export const cacheRuleSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'must be lowercase words joined by "-"'),
  suffix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'must be a plain file-name suffix'),
  contentType: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.+-]*\/[a-z0-9][a-z0-9.+-]*$/, 'must be a bare media type'),
  cacheControl: z.string().regex(/^[a-z0-9=, -]+$/, 'must be plain Cache-Control directives'),
  edgeTtlSeconds: z.number().int().nonnegative(),
});

/** True when the rule's objects never change once written (Cache-Control: immutable). */
export function isImmutable(rule: CacheRule): boolean {
  return /(?:^|[\s,])immutable(?:$|[\s,])/.test(rule.cacheControl);
}

// Playlists are text; segments and init files are already-compressed media that gzip only slows.
/** True when the rule's objects are text worth compressing at the edge. */
export function isCompressible(rule: CacheRule): boolean {
  return /^text\/|mpegurl$|\+xml$|json$/.test(rule.contentType);
}

// A later suffix that ends with an earlier suffix could never match first, so it is an error.
/** Schema for a whole rule table: at least one rule, unique names, no rule shadowed. */
export const cacheRuleTableSchema = z
  .array(cacheRuleSchema)
  .min(1)
  .superRefine((rules, ctx) => {
    rules.forEach((rule, index) => {
      const earlier = rules.slice(0, index);
      if (earlier.some((other) => other.name === rule.name)) {
        ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `duplicate ${rule.name}` });
      }
      const shadow = earlier.find((other) => rule.suffix.endsWith(other.suffix));
      if (shadow) {
        ctx.addIssue({
          code: 'custom',
          path: [index, 'suffix'],
          message: `"${rule.suffix}" is shadowed by the earlier rule ${shadow.name}`,
        });
      }
    });
  });
