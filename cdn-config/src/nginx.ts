import { z } from 'zod';
import {
  cacheRules,
  cacheRuleTableSchema,
  isCompressible,
  isImmutable,
  type CacheRule,
} from './cache-rules';
import {
  blank,
  block,
  comment,
  directive,
  quote,
  renderNginx,
  type NginxNode,
} from './nginx-syntax';
import {
  CHANNEL_NAME_PATTERN,
  PRIVATE_KEY_PREFIX,
  SIGNATURE_LENGTH,
  SIGNED_PATH_PREFIX,
  playbackSigningSecretSchema,
} from './private-playback';
import { s3ResponseHeaders } from './s3-headers';
import { corsOriginSchema, parseOrThrow } from './validation';

// Paths end up as bare nginx tokens, so they are limited to characters that need no quoting.
// A relative path is resolved by nginx against its prefix (`nginx -p`).
const pathSchema = z
  .string()
  .regex(/^[A-Za-z0-9._/@+=,:~-]+$/, 'must be a path without spaces or nginx syntax characters');
const sizeSchema = z.string().regex(/^[1-9][0-9]*[kKmMgG]?$/, 'must be an nginx size like 512m');
const durationSchema = z
  .string()
  .regex(/^[1-9][0-9]*(?:ms|s|m|h|d|w|M|y)?$/, 'must be an nginx time like 10m');
const listenHostSchema = z.union([z.ipv4(), z.ipv6(), z.literal('*')], {
  error: 'must be an IPv4 or IPv6 address, or *',
});
const originUrlSchema = z
  .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .refine((value) => {
    const url = new URL(value);
    return url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
  }, 'must be scheme://host[:port] with no path, query, or credentials (the bucket is separate)');

/** Options of `renderNginxEdgeConfig`; `NginxEdgeOptions` is what callers pass. */
export const nginxEdgeOptionsSchema = z
  .strictObject({
    /** Address the edge listens on: an IPv4 or IPv6 address, or `*` for all. */
    listenHost: listenHostSchema,
    /** TCP port the edge listens on. */
    listenPort: z.number().int().min(1).max(65_535),
    /** S3 endpoint, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`. */
    originUrl: originUrlSchema,
    /** Bucket addressed path-style: `/<key>` at the edge is `<originUrl>/<bucket>/<key>`. */
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid S3 bucket name'),
    /** Directory holding cached objects; nginx creates it, but not its parent. */
    cacheDirectory: pathSchema,
    /** Most disk the cache may use before the least recently used objects are evicted. */
    cacheMaxSize: sizeSchema.default('1g'),
    /** Shared memory for cache keys; 1 MB holds about 8,000 keys. */
    cacheKeysZoneSize: sizeSchema.default('10m'),
    /** Cached objects not requested for this long are evicted even while still fresh. */
    cacheInactive: durationSchema.default('10m'),
    /** File nginx writes its master process id to. */
    pidFile: pathSchema,
    /** Error log file. */
    errorLogPath: pathSchema,
    /** Least severe level written to the error log. */
    errorLogLevel: z.enum(['debug', 'info', 'notice', 'warn', 'error', 'crit']).default('warn'),
    /** Access log file; lines carry the cache status. */
    accessLogPath: pathSchema,
    /** Existing directory where nginx creates its client body/proxy/fastcgi/uwsgi/scgi temp paths. */
    tempDirectory: pathSchema,
    /** Fork into the background; off suits containers, supervisors, and tests. */
    daemon: z.boolean().default(false),
    /** Run a master with workers; off runs one process (no cache manager, for debugging only). */
    masterProcess: z.boolean().default(true),
    /** Worker process count, or `auto` for one per core. */
    workerProcesses: z.union([z.literal('auto'), z.number().int().min(1)]).default('auto'),
    /** Connections each worker may hold, viewers and origin together. */
    workerConnections: z.number().int().min(16).default(1024),
    /** `user [group]` the workers switch to when nginx starts as root; omitted means `nobody`. */
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]*(?: [a-z_][a-z0-9_-]*)?$/, 'must be "user" or "user group"')
      .optional(),
    /** Value of Access-Control-Allow-Origin: `*` or one origin. */
    corsAllowedOrigin: corsOriginSchema.default('*'),
    /** CA bundle that verifies an https origin's certificate. */
    originCaFile: pathSchema.default('/etc/ssl/certs/ca-certificates.crt'),
    /**
     * Secret shared with the api that signs private channels' playback paths; without it the edge
     * serves no private object at all.
     */
    playbackSigningSecret: playbackSigningSecretSchema.optional(),
    /**
     * The LL-HLS origin: an ingest node's HTTP address (`http://host:port`). Playlists, parts and
     * the newest segments of live streams are fetched there first, blocking requests included, and
     * from S3 when it does not serve the stream. Without it, everything comes from S3.
     */
    liveOriginUrl: originUrlSchema.optional(),
    /**
     * With several ingest nodes: the api that says which node is the LL-HLS origin of a channel
     * (`GET /api/edge/live-origin/<channel>`, answered in X-Hearth-Live-Origin, kept 1 s), and the
     * secret it asks of the edge (API_EDGE_SECRET). In place of `liveOriginUrl`.
     */
    liveOriginResolver: z
      .strictObject({
        apiUrl: originUrlSchema,
        edgeSecret: z
          .string()
          .regex(/^[A-Za-z0-9_-]{32,256}$/, 'must be 32-256 letters and digits'),
      })
      .optional(),
  })
  .refine((options) => !(options.liveOriginUrl && options.liveOriginResolver), {
    message: 'give liveOriginUrl or liveOriginResolver, not both',
  });

/** Options accepted by `renderNginxEdgeConfig` (defaults applied by the schema). */
export type NginxEdgeOptions = z.input<typeof nginxEdgeOptionsSchema>;
type ParsedOptions = z.output<typeof nginxEdgeOptionsSchema>;

/** Name of the shared-memory cache zone in the generated config. */
export const NGINX_CACHE_ZONE = 'hls_edge';
const UPSTREAM = 's3_origin';
const LIVE_UPSTREAM = 'live_origin';
const API_UPSTREAM = 'hearth_api';
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
const ALLOWED_METHODS = 'GET, HEAD, OPTIONS';
// Headers a player may send cross-origin: byte ranges and conditional requests.
const PREFLIGHT_ALLOW_HEADERS = 'Range, If-Range, If-None-Match, If-Modified-Since';
const PREFLIGHT_MAX_AGE_SECONDS = 86_400;

function regexForSuffix(suffix: string): string {
  return `${suffix.replace(/[.\\^$|?*+()[\]{}]/g, '\\$&')}$`;
}

function listenAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function originParts(originUrl: string): { scheme: string; host: string; server: string } {
  const url = new URL(originUrl);
  const scheme = url.protocol.slice(0, -1);
  const port = url.port || (scheme === 'https' ? '443' : '80');
  return { scheme, host: url.host, server: `${url.hostname}:${port}` };
}

function mainContext(options: ParsedOptions): NginxNode[] {
  return [
    comment(
      'Generated by @hearth/cdn-config from the cache-rule table (cdn-config/src/cache-rules.ts). ' +
        'Change the table or the generator, not this file.',
    ),
    blank,
    directive('daemon', options.daemon ? 'on' : 'off'),
    directive('master_process', options.masterProcess ? 'on' : 'off'),
    directive('worker_processes', String(options.workerProcesses)),
    ...(options.user ? [directive('user', ...options.user.split(' '))] : []),
    directive('pid', options.pidFile),
    comment(
      'The error log is set here so nothing is written to the compiled-in /var/log/nginx. No ' +
        'load_module and no include: the edge needs only modules built into nginx.',
    ),
    directive('error_log', options.errorLogPath, options.errorLogLevel),
    blank,
    block('events', [], [directive('worker_connections', String(options.workerConnections))]),
  ];
}

function httpBasics(options: ParsedOptions, rules: readonly CacheRule[]): NginxNode[] {
  const temp = options.tempDirectory.replace(/\/+$/, '');
  const compressible = [...new Set(rules.filter(isCompressible).map((rule) => rule.contentType))];
  return [
    directive('default_type', 'application/octet-stream'),
    comment('Version numbers in headers and error pages help attackers, not viewers.'),
    directive('server_tokens', 'off'),
    directive('sendfile', 'on'),
    directive('tcp_nopush', 'on'),
    directive('keepalive_timeout', '65s'),
    blank,
    directive(
      'log_format',
      'edge',
      quote(
        '$remote_addr [$time_local] "$request_method $edge_logged_uri $server_protocol" ' +
          '$status $body_bytes_sent ' +
          'cache=$upstream_cache_status upstream=$upstream_response_time rt=$request_time',
      ),
    ),
    directive('access_log', options.accessLogPath, 'edge'),
    comment(
      'A signature in a signed path lets anyone holding it watch a private channel until it ' +
        'expires, so the log keeps the rest of the path and leaves the signature out.',
    ),
    block(
      'map',
      ['$request_uri', '$edge_logged_uri'],
      [
        directive(
          quote(`~^${SIGNED_PATH_PREFIX}/[^/?]*/(.*)$`),
          quote(`${SIGNED_PATH_PREFIX}/-/$1`),
        ),
        directive('default', '$request_uri'),
      ],
    ),
    blank,
    comment(
      'Every temp path is set explicitly: the compiled-in defaults are under /var/lib/nginx, ' +
        'which an unprivileged nginx running from its own prefix cannot create.',
    ),
    directive('client_body_temp_path', `${temp}/client_body`),
    directive('proxy_temp_path', `${temp}/proxy`),
    directive('fastcgi_temp_path', `${temp}/fastcgi`),
    directive('uwsgi_temp_path', `${temp}/uwsgi`),
    directive('scgi_temp_path', `${temp}/scgi`),
    blank,
    comment(
      'use_temp_path=off writes an object being fetched straight into the cache directory, so ' +
        'storing it is a rename on the same file system instead of a copy.',
    ),
    directive(
      'proxy_cache_path',
      options.cacheDirectory,
      'levels=1:2',
      `keys_zone=${NGINX_CACHE_ZONE}:${options.cacheKeysZoneSize}`,
      `max_size=${options.cacheMaxSize}`,
      `inactive=${options.cacheInactive}`,
      'use_temp_path=off',
    ),
    blank,
    ...(compressible.length > 0
      ? [
          comment(
            'Playlists are text that a player polls every segment, so compressing them pays; ' +
              'segments are compressed media and are not listed.',
          ),
          directive('gzip', 'on'),
          directive('gzip_types', ...compressible),
          directive('gzip_vary', 'on'),
          blank,
        ]
      : []),
  ];
}

function methodMaps(): NginxNode[] {
  const onlyForOptions = (variable: string, value: string): NginxNode =>
    block(
      'map',
      ['$request_method', variable],
      [directive('OPTIONS', quote(value)), directive('default', quote(''))],
    );
  return [
    comment('The edge serves reads only; anything else is answered 405 before it reaches S3.'),
    block(
      'map',
      ['$request_method', '$edge_method_allowed'],
      [
        directive('GET', '1'),
        directive('HEAD', '1'),
        directive('OPTIONS', '1'),
        directive('default', '0'),
      ],
    ),
    comment(
      'add_header skips a header whose value is empty, so these maps give the preflight-only ' +
        'CORS headers a value on OPTIONS and leave them off every other response.',
    ),
    onlyForOptions('$edge_preflight_methods', ALLOWED_METHODS),
    onlyForOptions('$edge_preflight_headers', PREFLIGHT_ALLOW_HEADERS),
    onlyForOptions('$edge_preflight_max_age', String(PREFLIGHT_MAX_AGE_SECONDS)),
    comment('RFC 9110 asks for Allow on 405 responses; OPTIONS lists the methods too.'),
    block(
      'map',
      ['$request_method', '$edge_allow'],
      [
        directive('GET', quote('')),
        directive('HEAD', quote('')),
        directive('default', quote(ALLOWED_METHODS)),
      ],
    ),
    blank,
  ];
}

function upstream(options: ParsedOptions): NginxNode[] {
  const origin = originParts(options.originUrl);
  const live = options.liveOriginUrl && originParts(options.liveOriginUrl);
  return [
    comment(
      'A named upstream keeps idle connections to the origin open between fetches. A host name ' +
        'is resolved once, when nginx starts or reloads.',
    ),
    block(
      'upstream',
      [UPSTREAM],
      [directive('server', origin.server), directive('keepalive', '32')],
    ),
    ...(live
      ? [
          comment('The LL-HLS origin: the ingest node serving the live streams.'),
          block(
            'upstream',
            [LIVE_UPSTREAM],
            [directive('server', live.server), directive('keepalive', '32')],
          ),
        ]
      : []),
    ...(options.liveOriginResolver
      ? [
          comment('The api, which says which ingest node is the LL-HLS origin of a channel.'),
          block(
            'upstream',
            [API_UPSTREAM],
            [
              directive('server', originParts(options.liveOriginResolver.apiUrl).server),
              directive('keepalive', '8'),
            ],
          ),
        ]
      : []),
    blank,
  ];
}

function serverCommon(options: ParsedOptions): NginxNode[] {
  const origin = originParts(options.originUrl);
  return [
    directive('listen', listenAddress(options.listenHost, options.listenPort)),
    directive('server_name', '_'),
    blank,
    block('if', ['($edge_method_allowed', '=', '0)'], [directive('return', '405')]),
    comment(
      'A CORS preflight is answered here: the answer depends only on this config, so asking the ' +
        'origin would add a round trip and a bucket CORS dependency for nothing.',
    ),
    block('if', ['($request_method', '=', 'OPTIONS)'], [directive('return', '204')]),
    blank,
    comment(
      'Headers are added at server level only: a location with its own add_header would drop ' +
        'all of these. "always" keeps them on errors, so a player can read a 404 or 502 instead ' +
        'of seeing an opaque CORS failure.',
    ),
    directive(
      'add_header',
      'Access-Control-Allow-Origin',
      quote(options.corsAllowedOrigin),
      'always',
    ),
    directive(
      'add_header',
      'Access-Control-Expose-Headers',
      quote('Content-Length, Content-Range, X-Cache-Status'),
      'always',
    ),
    directive('add_header', 'Access-Control-Allow-Methods', '$edge_preflight_methods', 'always'),
    directive('add_header', 'Access-Control-Allow-Headers', '$edge_preflight_headers', 'always'),
    directive('add_header', 'Access-Control-Max-Age', '$edge_preflight_max_age', 'always'),
    directive('add_header', 'Allow', '$edge_allow', 'always'),
    directive('add_header', 'X-Cache-Status', '$upstream_cache_status', 'always'),
    blank,
    comment(
      'HTTP/1.1 with an empty Connection header is what lets the upstream keepalive pool reuse ' +
        'connections.',
    ),
    directive('proxy_http_version', '1.1'),
    directive('proxy_set_header', 'Connection', quote('')),
    comment('S3 routes path-style requests by Host, so it must name the origin, not this edge.'),
    directive('proxy_set_header', 'Host', origin.host),
    comment(
      'Viewer credentials stay at the edge: the origin is read anonymously, and a shared cache ' +
        'must never hold a response made for one viewer.',
    ),
    directive('proxy_set_header', 'Authorization', quote('')),
    directive('proxy_set_header', 'Cookie', quote('')),
    comment(
      "CORS is the edge's job, so the origin never sees Origin. An identity Accept-Encoding keeps " +
        'a compressing origin from filling the cache with gzip bodies that not every viewer can ' +
        'read.',
    ),
    directive('proxy_set_header', 'Origin', quote('')),
    directive('proxy_set_header', 'Accept-Encoding', quote('')),
    ...(origin.scheme === 'https'
      ? [
          comment('Verify the origin certificate and send SNI, which S3 requires.'),
          directive('proxy_ssl_server_name', 'on'),
          directive('proxy_ssl_name', new URL(options.originUrl).hostname),
          directive('proxy_ssl_verify', 'on'),
          directive('proxy_ssl_trusted_certificate', options.originCaFile),
        ]
      : []),
    blank,
    comment(
      "S3's own headers say how the bucket is run and mean nothing to a player; its CORS and " +
        'Vary headers would contradict the ones this edge sets.',
    ),
    comment(
      'The longest of these names (48 characters) does not fit the default 64-byte buckets of ' +
        'the hidden-headers hash, and nginx refuses to start.',
    ),
    directive('proxy_headers_hash_bucket_size', '128'),
    ...s3ResponseHeaders.map((header) => directive('proxy_hide_header', header)),
    ...[
      'Access-Control-Allow-Origin',
      'Access-Control-Allow-Credentials',
      'Access-Control-Allow-Methods',
      'Access-Control-Allow-Headers',
      'Access-Control-Expose-Headers',
      'Access-Control-Max-Age',
      'Vary',
      'Set-Cookie',
    ].map((header) => directive('proxy_hide_header', header)),
    blank,
    comment(
      'How long the edge keeps an object comes from the rule table, not from headers stored with ' +
        "the object. Vary is ignored because nginx would key the cache on the viewer's Origin " +
        'header even though the origin never sees it.',
    ),
    directive(
      'proxy_ignore_headers',
      'Cache-Control',
      'Expires',
      'X-Accel-Expires',
      'Set-Cookie',
      'Vary',
    ),
    comment(
      'The key is the path alone: query strings are not forwarded either, so "?nocache=<random>" ' +
        'cannot turn every request into an origin fetch.',
    ),
    directive('proxy_cache_key', '$uri'),
    comment(
      'When a crowd asks for an object the edge does not hold yet, one request fetches it and the ' +
        'others wait up to 5 s for the cached copy instead of each hitting the origin.',
    ),
    directive('proxy_cache_lock', 'on'),
    directive('proxy_cache_lock_timeout', '5s'),
    directive('proxy_cache_lock_age', '5s'),
    comment(
      'An expired playlist is refreshed with If-None-Match, so an unchanged one costs a 304.',
    ),
    directive('proxy_cache_revalidate', 'on'),
    comment(
      "Ranges: with caching on, nginx drops the viewer's Range header and fetches the whole " +
        'object (a 2 s segment is a few MB). It cuts ranges from a response only when the origin ' +
        'sent Accept-Ranges, which S3 does but not every S3-compatible store does: ' +
        'proxy_force_ranges answers 206 from the full response regardless, even on a MISS. The ' +
        'slice module would instead cache fixed-size pieces ' +
        'under separate keys and make one origin request per piece: worth it for large VOD files, ' +
        'pure overhead for small segments. max_ranges 1 refuses multipart range answers, which ' +
        'players never ask for.',
    ),
    directive('proxy_force_ranges', 'on'),
    directive('max_ranges', '1'),
    comment(
      'A short connect timeout makes an unreachable origin fail fast, so stale segments are ' +
        'served quickly rather than after a long wait.',
    ),
    directive('proxy_connect_timeout', '2s'),
    directive('proxy_send_timeout', '10s'),
    directive('proxy_read_timeout', '10s'),
    comment(
      'S3 error bodies name the bucket and key, and a private bucket answers 403 for a missing ' +
        'key: both become a plain 404 here.',
    ),
    directive('proxy_intercept_errors', 'on'),
    directive('error_page', '403', '404', '=404', '@not_found'),
    blank,
  ];
}

type RuleKind = 'uncached' | 'immutable' | 'short-lived';

function ruleKind(rule: CacheRule): RuleKind {
  if (rule.edgeTtlSeconds === 0) return 'uncached';
  return isImmutable(rule) ? 'immutable' : 'short-lived';
}

// Why each kind of rule is cached the way it is; written once above the locations that use it.
const KIND_NOTES: Record<RuleKind, string> = {
  uncached:
    'TTL 0: every request goes to the origin and nothing is stored. The cache stays configured ' +
    '(bypassed) so that X-Cache-Status still reports BYPASS.',
  immutable:
    'Immutable objects: a stored copy stays correct however old it is, so it is served when the ' +
    'origin is down or failing; "updating" lets one request refresh it while others get the copy.',
  'short-lived':
    'Short TTLs (live playlists): nginx stores expiry in whole seconds and keeps an object fresh ' +
    "through the TTL's last second, so a TTL of N s lasts between N and N+1 s. proxy_cache_lock " +
    'only guards objects not cached yet; once one expires, "updating" is what keeps a crowd to ' +
    'one origin refresh. A stale copy is not served on origin errors: an old live playlist would ' +
    'leave players stalled with nothing to act on, while an error makes them retry.',
};

function cachingDirectives(rule: CacheRule): NginxNode[] {
  const cache = directive('proxy_cache', NGINX_CACHE_ZONE);
  switch (ruleKind(rule)) {
    case 'uncached':
      return [cache, directive('proxy_cache_bypass', '1'), directive('proxy_no_cache', '1')];
    case 'immutable':
      return [
        cache,
        directive('proxy_cache_valid', '200', `${rule.edgeTtlSeconds}s`),
        directive(
          'proxy_cache_use_stale',
          'error',
          'timeout',
          'invalid_header',
          'updating',
          'http_500',
          'http_502',
          'http_503',
          'http_504',
        ),
      ];
    case 'short-lived':
      return [
        cache,
        directive('proxy_cache_valid', '200', `${rule.edgeTtlSeconds}s`),
        directive('proxy_cache_use_stale', 'updating'),
      ];
  }
}

function ruleLocations(rules: readonly CacheRule[], options: ParsedOptions): NginxNode[] {
  const kinds = [...new Set(rules.map(ruleKind))];
  return [
    comment(
      'One location per cache rule. Regex locations are tried in the order written and the ' +
        'first match wins, the same rule as cacheRuleFor(). Each maps /<key> to ' +
        '/<bucket>/<key> (path-style S3); the trailing "?" of the rewrite drops the query ' +
        'string, so viewers cannot send S3 sub-resource requests such as ?acl or ?versions.',
    ),
    ...kinds.flatMap((kind) => [blank, comment(KIND_NOTES[kind])]),
    blank,
    ...rules.flatMap((rule) => [
      comment(
        `${rule.name}: *${rule.suffix}, edge TTL ${rule.edgeTtlSeconds} s ` +
          `(${rule.contentType}; ${rule.cacheControl}).`,
      ),
      block('location', ['~', regexForSuffix(rule.suffix)], originFetch(rule, options)),
      blank,
    ]),
  ];
}

// What a rule's location does: map the path to its key in the bucket, fetch it, cache it.
function originFetch(rule: CacheRule, options: ParsedOptions): NginxNode[] {
  const scheme = originParts(options.originUrl).scheme;
  return [
    directive('rewrite', '^', `/${options.bucket}$uri?`, 'break'),
    directive('proxy_pass', `${scheme}://${UPSTREAM}`),
    ...cachingDirectives(rule),
  ];
}

function hasLiveOrigin(options: ParsedOptions): boolean {
  return options.liveOriginUrl !== undefined || options.liveOriginResolver !== undefined;
}

// Named locations the live locations fall back to: the same object in S3, cached by its rule
// (nginx allows named locations at server level only).
function liveFallbacks(rules: readonly CacheRule[], options: ParsedOptions): NginxNode[] {
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
function liveLocations(
  prefix: string,
  rules: readonly CacheRule[],
  options: ParsedOptions,
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
function liveOriginLookup(resolver: NonNullable<ParsedOptions['liveOriginResolver']>): NginxNode[] {
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

// The signed path's parts; the object part is limited to what HLS object names use, so the
// rewrite below can never be handed a "?" or a path that climbs out of the channel.
const SIGNED_PATH_REGEX =
  `^${SIGNED_PATH_PREFIX}/(?<signed_signature>[A-Za-z0-9_-]{${SIGNATURE_LENGTH}})` +
  `/(?<signed_expires>[0-9]{1,12})/(?<signed_channel>${CHANNEL_NAME_PATTERN})` +
  '/(?<signed_object>[A-Za-z0-9_-][A-Za-z0-9._/-]*)$';

function signedLocations(options: ParsedOptions): NginxNode[] {
  const secret = options.playbackSigningSecret;
  const check: NginxNode[] = secret
    ? [
        comment(
          'secure_link_md5 builds the same string as signedString() in private-playback.ts. ' +
            '$secure_link is empty for a wrong signature and "0" once the expiry has passed.',
        ),
        directive('secure_link', '$signed_signature,$signed_expires'),
        directive(
          'secure_link_md5',
          quote(`$secure_link_expires:${PRIVATE_KEY_PREFIX}/$signed_channel:${secret}`),
        ),
        block('if', ['($secure_link', '!=', '1)'], [directive('return', '403')]),
        comment(
          'The object is served from the private location below, which nothing else reaches.',
        ),
        directive('rewrite', '^', `/${PRIVATE_KEY_PREFIX}/$signed_channel/$signed_object`, 'last'),
      ]
    : [
        comment('No playback signing secret is configured, so no signature can be valid.'),
        directive('return', '403'),
      ];
  return [
    comment(
      `Private channels: their objects are stored under ${PRIVATE_KEY_PREFIX}/<channel>/ and ` +
        `served only at ${SIGNED_PATH_PREFIX}/<signature>/<expires>/<channel>/<object>. The ` +
        'signature covers the expiry and the channel, not the object, so the relative URLs in ' +
        "a channel's playlists inherit it and one signature serves all of that channel's " +
        'objects until it expires. The ^~ prefix keeps the public rule locations from matching.',
    ),
    block(
      'location',
      ['^~', `${SIGNED_PATH_PREFIX}/`],
      [
        comment(
          'Only refusals are answered in this location, so the server-wide mapping of 403 to ' +
            '404 (meant for S3 answers) is replaced: a refused viewer gets a plain 403.',
        ),
        directive('error_page', '404', '=404', '@not_found'),
        block('location', ['~', quote(SIGNED_PATH_REGEX)], check),
        directive('return', '403'),
      ],
    ),
    blank,
  ];
}

function privateLocations(rules: readonly CacheRule[], options: ParsedOptions): NginxNode[] {
  return [
    comment(
      `internal: a viewer asking for /${PRIVATE_KEY_PREFIX}/... directly gets a 404; only the ` +
        'rewrite of a valid signed path reaches these locations. The rules and caching are those ' +
        'of public objects; the cache key is the object key, so every signature of a channel ' +
        'shares one cached copy.',
    ),
    block(
      'location',
      ['^~', `/${PRIVATE_KEY_PREFIX}/`],
      [
        directive('internal'),
        ...(hasLiveOrigin(options) ? liveLocations(PRIVATE_KEY_PREFIX, rules, options, true) : []),
        ...rules.map((rule) =>
          block(
            'location',
            ['~', regexForSuffix(rule.suffix)],
            [directive('internal'), ...originFetch(rule, options)],
          ),
        ),
        directive('return', '404'),
      ],
    ),
    blank,
  ];
}

/** Renders a complete nginx.conf for a caching edge in front of an S3 bucket. */
export function renderNginxEdgeConfig(
  options: NginxEdgeOptions,
  rules: readonly CacheRule[] = cacheRules,
): string {
  const parsed = parseOrThrow(nginxEdgeOptionsSchema, options, 'nginx edge options');
  const table = parseOrThrow(cacheRuleTableSchema, rules, 'cache rule table');
  return renderNginx([
    ...mainContext(parsed),
    blank,
    block(
      'http',
      [],
      [
        ...httpBasics(parsed, table),
        ...methodMaps(),
        ...upstream(parsed),
        block(
          'server',
          [],
          [
            ...serverCommon(parsed),
            ...signedLocations(parsed),
            ...privateLocations(table, parsed),
            ...(hasLiveOrigin(parsed)
              ? [
                  comment(
                    'Live streams: the ingest node is the origin of their LL-HLS playlists and ' +
                      'parts, which S3 cannot serve (a blocking request is held open until the ' +
                      'part exists); S3 answers when that origin does not serve the stream.',
                  ),
                  ...liveLocations('live', table, parsed, false),
                  ...liveFallbacks(table, parsed),
                  ...(parsed.liveOriginResolver ? liveOriginLookup(parsed.liveOriginResolver) : []),
                  blank,
                ]
              : []),
            ...ruleLocations(table, parsed),
            comment(
              'No rule, no object: this also keeps "/" from turning into a bucket listing at the ' +
                'origin.',
            ),
            block('location', ['/'], [directive('return', '404')]),
            block('location', ['@not_found'], [directive('return', '404')]),
          ],
        ),
      ],
    ),
  ]);
}
