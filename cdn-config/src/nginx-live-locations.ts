import { cacheRuleNamed, type CacheRule } from './cache-rules';
import {
  cachingDirectives,
  clearedOriginRequestHeaders,
  originFetch,
} from './nginx-cache-locations';
import {
  API_UPSTREAM,
  EDGE_SECRET_HEADER,
  LIVE_UPSTREAM,
  NGINX_CACHE_ZONE,
  SIGNED_PATH_CHECKED,
  originParts,
  type ParsedEdgeOptions,
} from './nginx-edge-options';
import { blank, block, comment, directive, quote, type NginxNode } from './nginx-syntax';
import { CHANNEL_NAME_PATTERN, PRIVATE_KEY_PREFIX } from './private-playback';

// Internal location whose answer names a channel's live origin, for auth_request.
const LIVE_ORIGIN_LOOKUP = '/_hearth_live_origin';
// Blocking playlist requests wait up to three target durations at the origin (6 s with 2 s
// segments); the crowd behind the one request the edge sends waits a little longer for its
// answer instead of going to the origin itself.
const LIVE_LOCK_SECONDS = 8;

/**
 * Which live paths: `public` under /live/, `private` under /private/, reached only by the rewrite
 * of a valid signed path.
 */
export type LiveScope = 'public' | 'private';

// The named locations each scope falls back to, in S3.
const FALLBACKS: Record<LiveScope, { playlist: string; media: string }> = {
  public: { playlist: 'live_playlist_from_s3', media: 'live_media_from_s3' },
  private: { playlist: 'private_live_playlist_from_s3', media: 'private_live_media_from_s3' },
};
// Names in the live paths: a channel, a rendition, and a playlist or media file of it.
const NAME = '[A-Za-z0-9_-]+';
const LIVE_MEDIA_FILE = `${NAME}(?:\\.[0-9]+)?\\.(?:m4s|mp4)`;

/** Whether the edge has an LL-HLS origin: one ingest node, or the api naming one per channel. */
export function hasLiveOrigin(options: ParsedEdgeOptions): boolean {
  return options.liveOriginUrl !== undefined || options.liveOriginResolver !== undefined;
}

// Named locations the live locations fall back to: the same object in S3, cached by its rule
// (nginx allows named locations at server level only). nginx refuses a viewer's request for an
// internal location with a 404, and that 404 goes to the location's error_page like any other:
// the private fallbacks would then serve the private object itself. They serve only requests
// whose signed path was checked.
function liveFallbacks(
  scope: LiveScope,
  rules: readonly CacheRule[],
  options: ParsedEdgeOptions,
): NginxNode[] {
  const guard =
    scope === 'private'
      ? [block('if', [`(${SIGNED_PATH_CHECKED}`, '!=', '1)'], [directive('return', '404')])]
      : [];
  return [
    block(
      'location',
      [`@${FALLBACKS[scope].playlist}`],
      [...guard, ...originFetch(cacheRuleNamed(rules, 'media-playlist'), options)],
    ),
    block(
      'location',
      [`@${FALLBACKS[scope].media}`],
      [...guard, ...originFetch(cacheRuleNamed(rules, 'fmp4-segment'), options)],
    ),
  ];
}

/**
 * LL-HLS under `/<prefix>/<channel>/` of the scope: playlists and media from the live origin
 * first, S3 after. Playlists are keyed with their blocking-reload query (nothing else of the
 * query is used), so the crowd waiting for the same next part costs the origin one request.
 */
export function liveLocations(
  scope: LiveScope,
  rules: readonly CacheRule[],
  options: ParsedEdgeOptions,
): NginxNode[] {
  const prefix = scope === 'public' ? 'live' : PRIVATE_KEY_PREFIX;
  const internal = scope === 'private' ? [directive('internal')] : [];
  const playlistRule = cacheRuleNamed(rules, 'media-playlist');
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
  // A location's proxy_set_header replaces every one it would inherit from the server, so the
  // headers cleared for every origin come again before the secret.
  const secret = options.liveOriginSecret
    ? [
        ...clearedOriginRequestHeaders(),
        directive('proxy_set_header', EDGE_SECRET_HEADER, quote(options.liveOriginSecret)),
      ]
    : [];
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
        ...internal,
        ...origin.find,
        directive('proxy_pass', `${origin.target}$uri?${blockingQuery}`),
        ...secret,
        directive('proxy_cache', NGINX_CACHE_ZONE),
        directive('proxy_cache_key', `$uri?${blockingQuery}`),
        directive('proxy_cache_valid', '200', `${playlistRule.edgeTtlSeconds}s`),
        directive('proxy_cache_use_stale', 'updating'),
        ...lock,
        fallbackTo(FALLBACKS[scope].playlist),
      ],
    ),
    block(
      'location',
      ['~', quote(`${channel}/${NAME}/${LIVE_MEDIA_FILE}$`)],
      [
        ...internal,
        ...origin.find,
        directive('proxy_pass', `${origin.target}$uri`),
        ...secret,
        ...cachingDirectives(cacheRuleNamed(rules, 'fmp4-segment')),
        ...lock,
        fallbackTo(FALLBACKS[scope].media),
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
        directive('proxy_set_header', EDGE_SECRET_HEADER, quote(resolver.edgeSecret)),
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
 * The server-level part of LL-HLS: the public live locations, the S3 fallbacks of both scopes
 * and, with a resolver, the lookup of each channel's origin.
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
    ...liveLocations('public', rules, options),
    ...liveFallbacks('public', rules, options),
    ...liveFallbacks('private', rules, options),
    ...(options.liveOriginResolver ? liveOriginLookup(options.liveOriginResolver) : []),
    blank,
  ];
}
