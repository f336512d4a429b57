import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { grantSchema } from '@hearth/protocol';
import { ConfigError, parseEnvConfig } from '@hearth/server-common';
import { edgeSecretSchema, playbackSigningSecretSchema } from '@hearth/cdn-config';
import {
  DEFAULT_DATABASE_CONNECT_TIMEOUT_MS,
  DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS,
  type PostgresTimeouts,
} from './db/postgres-client';
import { addressRangeListSchema } from './client-address';
import { nodesConfigShape } from './nodes/config';
import { embeddedTurnWanted, turnConfigIssues, turnConfigShape } from './turn/config';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const flag = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');
const grantList = z
  .string()
  .transform((value) => value.split(',').map((grant) => grant.trim()))
  .pipe(z.array(grantSchema).min(1));
/** What a guest may ever hold: never `moderate` or `stream`. */
const GUEST_GRANTABLE = ['join', 'speak', 'screen-share'] as const;
const guestGrantList = z
  .string()
  .transform((value) => value.split(',').map((grant) => grant.trim()))
  .pipe(
    z
      .array(
        z.enum(GUEST_GRANTABLE, {
          error: `guests may hold only ${GUEST_GRANTABLE.join(', ')}; never moderate or stream`,
        }),
      )
      .min(1),
  );
const DATABASE_URL_PATTERN = /^postgres(ql)?:\/\//;
const databaseUrlSchema = z
  .string()
  .regex(DATABASE_URL_PATTERN, 'must be a postgres:// or postgresql:// URL');

/** Settings of the api process. */
export const apiConfigSchema = z
  .object({
    /** Deployment profile: `embedded` runs everything in one process with guest access on. */
    profile: z.enum(['embedded', 'production']).default('embedded'),
    /** Address the HTTP server binds. */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port of the web app, REST API and signaling WebSocket. */
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    /** Whether display-name guests may join without an account; defaults by profile. */
    guestAccess: flag.optional(),
    /**
     * Grants a guest holds in every channel: join and speak by default, plus screen-share if
     * configured; never moderate or stream. Accounts always hold at least these.
     */
    guestGrants: guestGrantList.default(['join', 'speak']),
    /** Grants every registered account holds in every channel, before its memberships. */
    userGrants: grantList.default(['join', 'speak', 'screen-share']),
    /** Whether anyone may create an account with `POST /api/auth/register`. */
    registration: flag.default(true),
    /** Secret that signs access tokens (HS256); the embedded profile generates one into dataDir. */
    jwtSecret: z.string().min(32).optional(),
    /** Lifetime of an access token, in seconds. */
    accessTokenTtlSeconds: z.coerce.number().int().min(30).max(86_400).default(900),
    /** Lifetime of a refresh token, in seconds (each refresh issues a new one). */
    refreshTokenTtlSeconds: z.coerce
      .number()
      .int()
      .min(60)
      .default(30 * 24 * 3600),
    /** Requests per second one client address may make to `/api/auth/*` (burst of twice that). */
    authRatePerSecond: z.coerce.number().int().min(1).default(5),
    /** PostgreSQL server (`DATABASE_URL`); without it the embedded PGlite database is used. */
    databaseUrl: databaseUrlSchema.optional(),
    /**
     * Milliseconds allowed to open a PostgreSQL connection; past it the request that needed one
     * answers 503.
     */
    databaseConnectTimeoutMs: z.coerce
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(DEFAULT_DATABASE_CONNECT_TIMEOUT_MS),
    /**
     * Milliseconds one PostgreSQL statement may run: the server cancels it, and a server that does
     * not answer at all is given up a second later. The request answers 503.
     */
    databaseStatementTimeoutMs: z.coerce
      .number()
      .int()
      .min(100)
      .max(3_600_000)
      .default(DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS),
    /** Folder of the built web app served at `/`. */
    webDistDir: z.string().default(path.join(repoRoot, 'web/dist')),
    /** Log level. */
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
    /** REST requests per second allowed to one client address, sustained. */
    restRatePerSecond: z.coerce.number().int().min(1).default(50),
    /** Folder for the embedded profile's data: admin token, JWT secret, PGlite database, S3 objects. */
    dataDir: z.string().default(path.join(repoRoot, '.data')),
    /** Operator token for the admin CLI; the embedded profile generates one into dataDir. */
    adminToken: z.string().min(32).optional(),
    /** Port of the embedded profile's S3-compatible server (s3rver) when no S3_ENDPOINT is set. */
    embeddedS3Port: z.coerce.number().int().min(0).max(65535).default(9000),
    /** Port of the embedded profile's nginx CDN edge. */
    edgePort: z.coerce.number().int().min(0).max(65535).default(8081),
    /** Base URL viewers fetch HLS from (the CDN edge); the embedded profile fills it in. */
    cdnBaseUrl: z.url().optional(),
    /**
     * Secret shared with the CDN edge that signs private channels' playback URLs (32-256 letters
     * and digits); the embedded profile generates one into dataDir for its nginx edge.
     */
    playbackSigningSecret: playbackSigningSecretSchema.optional(),
    /**
     * Runs a voice node inside the api process, as the embedded profile does by default; with it
     * off, voice comes from voice-sfu processes that register with the api.
     */
    embeddedVoice: flag.optional(),
    /**
     * Runs an ingest node as a supervised child process (`stream-ingest/src/main.ts`); on by
     * default in the embedded profile. When off, ingest nodes run with `npm run ingest-node`.
     */
    embeddedIngest: flag.optional(),
    /**
     * HTTP port of the embedded ingest node on loopback: its metrics, and the LL-HLS origin the
     * embedded CDN edge reads live playlists and parts from.
     */
    embeddedIngestHttpPort: z.coerce.number().int().min(1).max(65535).default(4490),
    /**
     * RTMP URL handed to streamers with their key: the ingest nodes' balancer in production. By
     * default the embedded ingest node's own address.
     */
    rtmpUrl: z
      .url({ protocol: /^rtmps?$/, error: 'must be an rtmp:// or rtmps:// URL' })
      .optional(),
    /** Voice joins per second allowed to one client address (burst of twice that). */
    joinRatePerSecond: z.coerce.number().int().min(1).default(5),
    /**
     * Joins one identity may have waiting to connect at once (each holds a seat until its token
     * is admitted or expires).
     */
    maxPendingJoins: z.coerce.number().int().min(1).max(100).default(3),
    /** Channels one identity below admin may create per hour (per api instance). */
    channelsPerHour: z.coerce.number().int().min(1).max(10_000).default(10),
    /** Voice sessions one identity may hold at once, across channels and nodes. */
    maxVoiceSessions: z.coerce.number().int().min(1).max(100).default(4),
    /**
     * Spectators of a screen share at which new spectators go to HLS instead of WebRTC (the
     * handoff policy, api/src/handoff/policy.ts).
     */
    handoffViewers: z.coerce.number().int().min(1).max(1_000_000).default(32),
    /** Fraction of `handoffViewers` at which the WebRTC→HLS bridge starts warming up. */
    handoffPrewarm: z.coerce.number().min(0).max(1).default(0.5),
    /**
     * Fraction of `handoffViewers` the audience must fall below before new spectators get WebRTC
     * again: the hysteresis on the way down.
     */
    handoffRelease: z.coerce.number().min(0).max(1).default(0.6),
    /** Lifetime of the join tokens voice nodes admit clients with, in seconds. */
    joinTokenTtlSeconds: z.coerce.number().int().min(10).max(3600).default(60),
    ...nodesConfigShape,
    ...turnConfigShape,
    /**
     * Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (comma-separated CIDRs,
     * IPv4 or IPv6); requests from anywhere else are taken as coming from their peer address.
     */
    trustedProxies: addressRangeListSchema.default([]),
    /**
     * Bearer token `/metrics` on the main port asks for, compared in constant time. Without it,
     * the main port serves `/metrics` to anyone in the embedded profile and to nobody in production.
     */
    metricsToken: z.string().min(32).optional(),
    /**
     * Secret the CDN edge presents (header `X-Hearth-Edge-Secret`) to ask which ingest node is
     * the LL-HLS origin of a channel; without it, nobody may ask.
     */
    edgeSecret: edgeSecretSchema.optional(),
    /** Port of a listener serving only `/metrics` and `/health`; none when unset. */
    metricsPort: z.coerce.number().int().min(0).max(65535).optional(),
    /** Address the metrics listener binds: loopback unless Prometheus scrapes from elsewhere. */
    metricsHost: z.string().min(1).default('127.0.0.1'),
    /**
     * Extra origins allowed to open the signaling WebSocket (comma-separated), and that pages may
     * connect to under the Content-Security-Policy: list voice nodes' signaling origins here.
     */
    allowedOrigins: z
      .string()
      .default('')
      .transform((value) =>
        value
          .split(',')
          .map((origin) => origin.trim())
          .filter(Boolean),
      )
      .pipe(
        z.array(
          z
            .url({ error: 'must be origins such as https://voice-1.example.com' })
            // Browsers send `Origin` without a path or trailing slash; so are these compared.
            .transform((url) => new URL(url).origin),
        ),
      ),
  })
  .superRefine((config, context) => {
    if (config.sweepIntervalMs >= config.nodeTimeoutMs) {
      context.addIssue({
        code: 'custom',
        path: ['sweepIntervalMs'],
        message: 'API_NODE_SWEEP_MS must be shorter than API_NODE_TIMEOUT_MS',
      });
    }
    if (config.profile === 'production' && config.jwtSecret === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['jwtSecret'],
        message: 'API_JWT_SECRET (at least 32 characters) is required in the production profile',
      });
    }
    for (const issue of turnConfigIssues(config)) {
      context.addIssue({ code: 'custom', path: [issue.path], message: issue.message });
    }
  })
  .transform((config) => ({
    ...config,
    guestAccess: config.guestAccess ?? config.profile === 'embedded',
    embeddedVoice: config.embeddedVoice ?? config.profile === 'embedded',
    embeddedIngest: config.embeddedIngest ?? config.profile === 'embedded',
    embeddedTurn: embeddedTurnWanted(config),
    // Members get at least what guests get.
    userGrants: [...new Set([...config.userGrants, ...config.guestGrants])],
  }));

/** Settings of the api process. */
export type ApiConfig = z.output<typeof apiConfigSchema>;

const envKeys: Record<string, string> = {
  API_PROFILE: 'profile',
  API_HOST: 'host',
  API_PORT: 'port',
  API_GUEST_ACCESS: 'guestAccess',
  API_GUEST_GRANTS: 'guestGrants',
  API_WEB_DIST_DIR: 'webDistDir',
  API_LOG_LEVEL: 'logLevel',
  API_REST_RATE: 'restRatePerSecond',
  API_ALLOWED_ORIGINS: 'allowedOrigins',
  API_TRUSTED_PROXIES: 'trustedProxies',
  API_METRICS_TOKEN: 'metricsToken',
  API_EDGE_SECRET: 'edgeSecret',
  API_METRICS_PORT: 'metricsPort',
  API_METRICS_HOST: 'metricsHost',
  API_CDN_BASE_URL: 'cdnBaseUrl',
  API_PLAYBACK_SIGNING_SECRET: 'playbackSigningSecret',
  API_DATA_DIR: 'dataDir',
  API_EMBEDDED_S3_PORT: 'embeddedS3Port',
  API_EDGE_PORT: 'edgePort',
  API_ADMIN_TOKEN: 'adminToken',
  API_USER_GRANTS: 'userGrants',
  API_REGISTRATION: 'registration',
  API_JWT_SECRET: 'jwtSecret',
  API_ACCESS_TOKEN_TTL: 'accessTokenTtlSeconds',
  API_REFRESH_TOKEN_TTL: 'refreshTokenTtlSeconds',
  API_AUTH_RATE: 'authRatePerSecond',
  API_DB_CONNECT_TIMEOUT_MS: 'databaseConnectTimeoutMs',
  API_DB_STATEMENT_TIMEOUT_MS: 'databaseStatementTimeoutMs',
  API_EMBEDDED_VOICE: 'embeddedVoice',
  API_EMBEDDED_INGEST: 'embeddedIngest',
  API_EMBEDDED_INGEST_HTTP_PORT: 'embeddedIngestHttpPort',
  API_RTMP_URL: 'rtmpUrl',
  API_JOIN_RATE: 'joinRatePerSecond',
  API_JOIN_TOKEN_TTL: 'joinTokenTtlSeconds',
  API_MAX_PENDING_JOINS: 'maxPendingJoins',
  API_MAX_VOICE_SESSIONS: 'maxVoiceSessions',
  API_HANDOFF_VIEWERS: 'handoffViewers',
  API_HANDOFF_PREWARM: 'handoffPrewarm',
  API_HANDOFF_RELEASE: 'handoffRelease',
  API_CHANNELS_PER_HOUR: 'channelsPerHour',
  API_NODE_TIMEOUT_MS: 'nodeTimeoutMs',
  API_NODE_SWEEP_MS: 'sweepIntervalMs',
  API_CLUSTER_SECRET: 'clusterSecret',
  API_TURN_URLS: 'turnUrls',
  API_TURN_SECRET: 'turnSecret',
  API_TURN_TTL: 'turnTtlSeconds',
  API_EMBEDDED_TURN: 'embeddedTurn',
  API_EMBEDDED_TURN_PORT: 'embeddedTurnPort',
  // REDIS_URL keeps the name Redis tools use; loadApiConfig hands it over under this one.
  API_REDIS_URL: 'redisUrl',
};

/**
 * Reads the api settings from `API_*` environment variables, and `DATABASE_URL`, which keeps the
 * name every PostgreSQL tool and host uses. Every problem of both is reported at once.
 */
export function loadApiConfig(env: Record<string, string | undefined>): ApiConfig {
  // An empty DATABASE_URL (a blank line in an env file) means unset, like a missing one.
  const databaseUrl = databaseUrlSchema.optional().safeParse(env.DATABASE_URL || undefined);
  const databaseProblem = databaseUrl.success
    ? undefined
    : `DATABASE_URL: ${databaseUrl.error.issues.map((issue) => issue.message).join(', ')}`;
  let config: ApiConfig;
  try {
    config = parseEnvConfig(
      apiConfigSchema,
      { ...env, API_REDIS_URL: env.REDIS_URL || undefined },
      'API_',
      envKeys,
    );
  } catch (error) {
    if (error instanceof ConfigError && databaseProblem) {
      throw new ConfigError(`${error.message}; ${databaseProblem}`);
    }
    throw error;
  }
  if (databaseProblem) throw new ConfigError(`invalid configuration: ${databaseProblem}`);
  return { ...config, databaseUrl: databaseUrl.data };
}

/** Builds a full config from defaults plus raw overrides, for embedding and tests. */
export function apiConfig(
  overrides: Partial<Record<keyof z.input<typeof apiConfigSchema>, string>> = {},
): ApiConfig {
  return apiConfigSchema.parse(overrides);
}

/** The PostgreSQL timeouts of a config, in the shape `openDatabase` and `PostgresClient` take. */
export function databaseTimeouts(config: ApiConfig): PostgresTimeouts {
  return {
    connectTimeoutMs: config.databaseConnectTimeoutMs,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  };
}
