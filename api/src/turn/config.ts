import { z } from 'zod';
import type { TurnSettings } from './credentials';

// One TURN or STUN URL as RTCIceServer takes it (RFC 7065): scheme, host, optional port and
// transport. Spaces and further query parameters are refused.
const TURN_URL = /^(turns?|stun):[^\s?#/]+(\?transport=(udp|tcp))?$/;
const turnUrlList = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((url) => url.trim())
      .filter(Boolean),
  )
  .pipe(
    z
      .array(
        z.string().regex(TURN_URL, {
          error:
            'must be turn:, turns: or stun: URLs such as turn:turn.example.com:3478?transport=udp',
        }),
      )
      .max(8),
  );

/** Default lifetime of TURN credentials: one day, as the TURN REST API draft recommends. */
export const DEFAULT_TURN_TTL_SECONDS = 86_400;

/** Fields of the TURN settings, spread into the api config schema. */
export const turnConfigShape = {
  /**
   * TURN servers handed to clients with each voice join (comma-separated `turn:`/`turns:` URLs
   * of one coturn); none when empty, unless the embedded profile runs its own coturn.
   */
  turnUrls: turnUrlList.default([]),
  /**
   * coturn's `static-auth-secret` (`use-auth-secret`), from which the api derives each client's
   * time-limited credentials; 32-256 printable characters without spaces.
   */
  turnSecret: z
    .string()
    .min(32)
    .max(256)
    .regex(/^[\x21-\x7e]+$/, { error: 'must be printable ASCII without spaces' })
    .optional(),
  /** Seconds the TURN credentials of a join stay valid. */
  turnTtlSeconds: z.coerce.number().int().min(60).max(604_800).default(DEFAULT_TURN_TTL_SECONDS),
  /**
   * Runs coturn on loopback when Debian's coturn is installed; on by default in the embedded
   * profile unless `turnUrls` names another TURN server.
   */
  embeddedTurn: z
    .enum(['true', 'false', '1', '0'])
    .transform((value) => value === 'true' || value === '1')
    .optional(),
  /** UDP and TCP port of the embedded coturn (0 picks a free one). */
  embeddedTurnPort: z.coerce.number().int().min(0).max(65535).default(3478),
};

/** What `turnConfigIssues` reads. */
interface TurnFields {
  turnUrls: string[];
  turnSecret?: string | undefined;
  embeddedTurn?: boolean | undefined;
}

/** Problems between the TURN settings, as config issues with the field they concern. */
export function turnConfigIssues(config: TurnFields): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];
  const hasUrls = config.turnUrls.length > 0;
  if (hasUrls && config.turnSecret === undefined) {
    issues.push({ path: 'turnSecret', message: 'API_TURN_URLS needs API_TURN_SECRET' });
  }
  if (!hasUrls && config.turnSecret !== undefined) {
    issues.push({ path: 'turnUrls', message: 'API_TURN_SECRET is set but API_TURN_URLS is not' });
  }
  if (hasUrls && config.embeddedTurn === true) {
    issues.push({
      path: 'embeddedTurn',
      message: 'API_EMBEDDED_TURN runs its own coturn; leave API_TURN_URLS unset with it',
    });
  }
  return issues;
}

/** Whether the embedded coturn runs: as configured, else in the embedded profile without TURN URLs. */
export function embeddedTurnWanted(config: {
  profile: 'embedded' | 'production';
  turnUrls: string[];
  embeddedTurn?: boolean | undefined;
}): boolean {
  return config.embeddedTurn ?? (config.profile === 'embedded' && config.turnUrls.length === 0);
}

/** The TURN settings of a config, for issuing credentials; no URLs when TURN is off. */
export function turnSettingsOf(config: {
  turnUrls: string[];
  turnSecret?: string | undefined;
  turnTtlSeconds: number;
}): TurnSettings {
  return config.turnSecret === undefined
    ? { urls: [], secret: '', ttlSeconds: config.turnTtlSeconds }
    : { urls: config.turnUrls, secret: config.turnSecret, ttlSeconds: config.turnTtlSeconds };
}
