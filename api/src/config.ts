import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { grantSchema } from '@hearth/protocol';
import { parseEnvConfig } from '@hearth/server-common';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const flag = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

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
     * Grants a guest holds in every channel. By default guests may also moderate and stream in
     * the embedded profile (one machine, loopback), and only join and speak in production.
     */
    guestGrants: z
      .string()
      .transform((value) => value.split(',').map((grant) => grant.trim()))
      .pipe(z.array(grantSchema).min(1))
      .optional(),
    /** Folder of the built web app served at `/`. */
    webDistDir: z.string().default(path.join(repoRoot, 'web/dist')),
    /** Log level. */
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
    /** REST requests per second allowed to one client address, sustained. */
    restRatePerSecond: z.coerce.number().int().min(1).default(50),
    /** Folder for the embedded profile's data: admin token, S3 objects. */
    dataDir: z.string().default(path.join(repoRoot, '.data')),
    /** Operator token for the admin CLI; the embedded profile generates one into dataDir. */
    adminToken: z.string().min(32).optional(),
    /** Port of the embedded profile's S3-compatible server (s3rver) when no S3_ENDPOINT is set. */
    embeddedS3Port: z.coerce.number().int().min(0).max(65535).default(9000),
    /** Port of the embedded profile's nginx CDN edge. */
    edgePort: z.coerce.number().int().min(0).max(65535).default(8081),
    /** Base URL viewers fetch HLS from (the CDN edge); the embedded profile fills it in. */
    cdnBaseUrl: z.url().optional(),
    /** Extra origins allowed to open the signaling WebSocket (comma-separated). */
    allowedOrigins: z
      .string()
      .default('')
      .transform((value) =>
        value
          .split(',')
          .map((origin) => origin.trim())
          .filter(Boolean),
      ),
  })
  .transform((config) => ({
    ...config,
    guestAccess: config.guestAccess ?? config.profile === 'embedded',
    guestGrants:
      config.guestGrants ??
      (config.profile === 'embedded'
        ? (['join', 'speak', 'moderate', 'stream'] as const)
        : (['join', 'speak'] as const)),
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
  API_CDN_BASE_URL: 'cdnBaseUrl',
  API_DATA_DIR: 'dataDir',
  API_EMBEDDED_S3_PORT: 'embeddedS3Port',
  API_EDGE_PORT: 'edgePort',
  API_ADMIN_TOKEN: 'adminToken',
};

/** Reads the api settings from `API_*` environment variables. */
export function loadApiConfig(env: Record<string, string | undefined>): ApiConfig {
  return parseEnvConfig(apiConfigSchema, env, 'API_', envKeys);
}

/** Builds a full config from defaults plus raw overrides, for embedding and tests. */
export function apiConfig(
  overrides: Partial<Record<keyof z.input<typeof apiConfigSchema>, string>> = {},
): ApiConfig {
  return apiConfigSchema.parse(overrides);
}
