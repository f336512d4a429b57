import { z } from 'zod';
import { playbackSigningSecretSchema } from './private-playback';
import { corsOriginSchema } from './validation';

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
/** The edge's secret, shown to the api and to the LL-HLS origins: 32-256 letters and digits. */
export const edgeSecretSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{32,256}$/, 'must be 32-256 letters and digits');
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
        edgeSecret: edgeSecretSchema,
      })
      .optional(),
    /**
     * The secret the LL-HLS origins ask of the edge (their INGEST_EDGE_SECRET), sent with every
     * request to them. Without it they serve public channels only.
     */
    liveOriginSecret: edgeSecretSchema.optional(),
  })
  .refine((options) => !(options.liveOriginUrl && options.liveOriginResolver), {
    message: 'give liveOriginUrl or liveOriginResolver, not both',
  });

/** Options accepted by `renderNginxEdgeConfig` (defaults applied by the schema). */
export type NginxEdgeOptions = z.input<typeof nginxEdgeOptionsSchema>;
/** The options after the schema's defaults, as the generator reads them. */
export type ParsedEdgeOptions = z.output<typeof nginxEdgeOptionsSchema>;

/** Name of the shared-memory cache zone in the generated config. */
export const NGINX_CACHE_ZONE = 'hls_edge';
/** Header (lower case) the edge sends its secret in, to the api and to the LL-HLS origins. */
export const EDGE_SECRET_HEADER = 'x-hearth-edge-secret';
/** Variable set to 1 once a request's signed path was checked, empty before. */
export const SIGNED_PATH_CHECKED = '$edge_signed_path_checked';
/** Name of the upstream that is the S3 origin. */
export const S3_UPSTREAM = 's3_origin';
/** Name of the upstream that is the one LL-HLS origin (`liveOriginUrl`). */
export const LIVE_UPSTREAM = 'live_origin';
/** Name of the upstream that is the api naming each channel's LL-HLS origin. */
export const API_UPSTREAM = 'hearth_api';

/** The scheme, Host header and upstream server (host:port) of an origin URL. */
export function originParts(originUrl: string): { scheme: string; host: string; server: string } {
  const url = new URL(originUrl);
  const scheme = url.protocol.slice(0, -1);
  const port = url.port || (scheme === 'https' ? '443' : '80');
  return { scheme, host: url.host, server: `${url.hostname}:${port}` };
}
