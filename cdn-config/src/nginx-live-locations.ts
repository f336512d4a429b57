import type { CacheRule } from './cache-rules';
import { cachingDirectives, originFetch } from './nginx-cache-locations';
import {
  API_UPSTREAM,
  LIVE_UPSTREAM,
  NGINX_CACHE_ZONE,
  originParts,
  type ParsedEdgeOptions,
} from './nginx-edge-options';
import { blank, block, comment, directive, quote, type NginxNode } from './nginx-syntax';
import { CHANNEL_NAME_PATTERN } from './private-playback';

// Internal location whose answer names a channel's live origin, for auth_request.
const LIVE_ORIGIN_LOOKUP = '/_hearth_live_origin';
// Blocking playlist requests wait up to three target durations at the origin (6 s with 2 s
// segments); the crowd behind the one request the edge sends waits a little longer for its
// answer instead of going to the origin itself.
const LIVE_LOCK_SECONDS = 8;
const LIVE_PLAYLIST_FALLBACK = 'live_playlist_from_s3';
const LIVE_MEDIA_FALLBACK = 'live_media_from_s3';
// Names in the live paths: a channel, a rendition, and a playlist or media file of it.
const NAME = '[A-Za-z0-9_-]+';
const LIVE_MEDIA_FILE = `${NAME}(?:\\.[0-9]+)?\\.(?:m4s|mp4)`;

/** Whether the edge has an LL-HLS origin: one ingest node, or the api naming one per channel. */
export function hasLiveOrigin(options: ParsedEdgeOptions): boolean {
  return options.liveOriginUrl !== undefined || options.liveOriginResolver !== undefined;
}

// Named locations the live locations fall back to: the same object in S3, cached by its rule
// (nginx allows named locations at server level only).
function liveFallbacks(rules: readonly CacheRule[], options: ParsedEdgeOptions): NginxNode[] {
  return [
    block(
      'location',
      [`@${LIVE_PLAYLIST_FALLBACK}`],
      originFetch(ruleNamed(rules, 'media-playlist'), options),
    ),
    block(
      'location',
      [`@${LIVE_MEDIA_FALLBACK}`],
      originFetch(ruleNamed(rules, 'fmp4-segment'), options),
    ),
  ];
}

function ruleNamed(rules: readonly CacheRule[], name: string): CacheRule {
  const rule = rules.find((candidate) => candidate.name === name);
  if (!rule) throw new TypeError(`the cache rule table has no ${name} rule`);
  return rule;
}

/**
 * LL-HLS under `/<prefix>/<channel>/`: playlists and media from the live origin first, S3 after.
 * Playlists are keyed with their blocking-reload query (nothing else of the query is used), so
 * the crowd waiting for the same next part costs the origin one request.
 */
export function liveLocations(
  prefix: string,
  rules: readonly CacheRule[],
  options: ParsedEdgeOptions,
  internal: boolean,
): NginxNode[] {
  const playlistRule = ruleNamed(rules, 'media-playlist');
  const blockingQuery = '_HLS_msn=$arg__HLS_msn&_HLS_part=$arg__HLS_part';
  const channel = `^/${prefix}/(?<live_channel>${CHANNEL_NAME_PATTERN})`;
  // One origin for every stream, or the one the api names for the channel (auth_request).
  const origin = options.liveOriginUrl
    ? { target: `${originParts(options.liveOriginUrl).scheme}://${LIVE_UPSTREAM}`, find: [] }
    : {
        target: 'http://$live_origin',
        find: [
          directive('auth_request', LIVE_ORIGIN_LOOKUP),
          directive('auth_request_set', '$live_origin', '$upstream_http_x_hearth_live_origin'),
        ],
      };
  const lock = [
    directive('proxy_cache_lock_timeout', `${LIVE_LOCK_SECONDS}s`),
    directive('proxy_cache_lock_age', `${LIVE_LOCK_SECONDS}s`),
  ];
  // 403 is the api saying no node serves the channel as origin.
  const fallbackTo = (name: string) =>
    directive('error_page', '403', '404', '500', '502', '503', '504', '=', `@${name}`);
  return [
    block(
      'location',
      ['~', quote(`${channel}/(?:master|${NAME}/index)\\.m3u8$`)],
      [
        ...(internal ? [directive('internal')] : []),
        ...origin.find,
        directive('proxy_pass', `${origin.target}$uri?${blockingQuery}`),
        directive('proxy_cache', NGINX_CACHE_ZONE),
        directive('proxy_cache_key', `$uri?${blockingQuery}`),
        directive('proxy_cache_valid', '200', `${playlistRule.edgeTtlSeconds}s`),
        directive('proxy_cache_use_stale', 'updating'),
        ...lock,
        fallbackTo(LIVE_PLAYLIST_FALLBACK),
      ],
    ),
    block(
      'location',
      ['~', quote(`${channel}/${NAME}/${LIVE_MEDIA_FILE}$`)],
      [
        ...(internal ? [directive('internal')] : []),
        ...origin.find,
        directive('proxy_pass', `${origin.target}$uri`),
        ...cachingDirectives(ruleNamed(rules, 'fmp4-segment')),
        ...lock,
        fallbackTo(LIVE_MEDIA_FALLBACK),
      ],
    ),
    blank,
  ];
}

// Asks the api which ingest node is the channel's live origin; the channel comes from the live
// location's capture, which the subrequest shares. The answer is kept 1 s, so a crowd costs the
// api one request a second per channel.
function liveOriginLookup(
  resolver: NonNullable<ParsedEdgeOptions['liveOriginResolver']>,
): NginxNode[] {
  return [
    comment(
      'Which ingest node is the LL-HLS origin of a channel: the api answers 204 with ' +
        'X-Hearth-Live-Origin (host:port), or 403 when none is, and the edge reads S3.',
    ),
    block(
      'location',
      ['=', LIVE_ORIGIN_LOOKUP],
      [
        directive('internal'),
        directive('proxy_pass', `http://${API_UPSTREAM}/api/edge/live-origin/$live_channel`),
        directive('proxy_pass_request_body', 'off'),
        directive('proxy_set_header', 'Content-Length', quote('')),
        directive('proxy_set_header', 'Connection', quote('')),
        directive('proxy_set_header', 'X-Hearth-Edge-Secret', quote(resolver.edgeSecret)),
        directive('proxy_cache', NGINX_CACHE_ZONE),
        directive('proxy_cache_key', 'live-origin/$live_channel'),
        directive('proxy_cache_valid', '204', '403', '1s'),
        directive('proxy_intercept_errors', 'off'),
      ],
    ),
    blank,
  ];
}

/**
 * The server-level part of LL-HLS: the public live locations, their S3 fallbacks and, with a
 * resolver, the lookup of each channel's origin.
 */
export function liveServerLocations(
  rules: readonly CacheRule[],
  options: ParsedEdgeOptions,
): NginxNode[] {
  return [
    comment(
      'Live streams: the ingest node is the origin of their LL-HLS playlists and ' +
        'parts, which S3 cannot serve (a blocking request is held open until the ' +
        'part exists); S3 answers when that origin does not serve the stream.',
    ),
    ...liveLocations('live', rules, options, false),
    ...liveFallbacks(rules, options),
    ...(options.liveOriginResolver ? liveOriginLookup(options.liveOriginResolver) : []),
    blank,
  ];
}
