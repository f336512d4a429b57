import { createHmac } from 'node:crypto';
import type { IceServer } from '@hearth/protocol';

/** Time-limited TURN credentials in coturn's REST scheme (`use-auth-secret`). */
export interface TurnCredentials {
  /** `<expiry in Unix seconds>:<user>`. */
  readonly username: string;
  /** base64(HMAC-SHA1(shared secret, username)). */
  readonly credential: string;
  /** When coturn stops accepting them, in Unix seconds. */
  readonly expiresAt: number;
}

/** Where clients find TURN and the secret shared with it. */
export interface TurnSettings {
  /** `turn:`/`turns:` URLs handed to clients; no TURN when empty. */
  readonly urls: readonly string[];
  /** coturn's `static-auth-secret`. */
  readonly secret: string;
  /** How long issued credentials stay valid, in seconds. */
  readonly ttlSeconds: number;
}

/**
 * coturn's TURN REST credentials (`use-auth-secret`, README.turnserver "TURN REST API"): the
 * username is the expiry time in Unix seconds and the user, joined by `:`, and the password is
 * base64(HMAC-SHA1(secret, username)). coturn recomputes the password from its copy of the
 * secret and refuses the pair once the expiry has passed, so nothing is stored per user.
 */
export function turnCredentials(options: {
  /** The secret shared with coturn. */
  secret: string;
  /** Who the credentials are for; it shows in coturn's logs. */
  user: string;
  /** Seconds they stay valid. */
  ttlSeconds: number;
  /** The current time in milliseconds; `Date.now()` when left out. */
  now?: number;
}): TurnCredentials {
  const { secret, user, ttlSeconds } = options;
  if (secret.length === 0) throw new TypeError('the TURN secret is empty');
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new TypeError('the TURN credential lifetime must be a positive whole number of seconds');
  }
  const expiresAt = Math.floor((options.now ?? Date.now()) / 1000) + ttlSeconds;
  const username = `${expiresAt}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential, expiresAt };
}

/** The `iceServers` of a voice join: one TURN server with fresh credentials, or none. */
export function iceServersFor(turn: TurnSettings, user: string, now?: number): IceServer[] {
  if (turn.urls.length === 0) return [];
  const { username, credential } = turnCredentials({
    secret: turn.secret,
    user,
    ttlSeconds: turn.ttlSeconds,
    now,
  });
  return [{ urls: [...turn.urls], username, credential }];
}
