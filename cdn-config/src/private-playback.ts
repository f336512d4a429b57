import { createHash } from 'node:crypto';
import { z } from 'zod';

// Private channels' HLS objects live under their own key prefix, so an edge that knows nothing
// about channels can still tell them apart: public objects are served from their plain path as
// before, while everything under the private prefix is reachable only through a signed path.
// A signed path names the channel after a signature and an expiry:
//
//   /live/_s/<signature>/<expires>/<channel>/master.m3u8  ->  private/<channel>/master.m3u8
//
// Playlists refer to variants and segments by relative URLs, which a player resolves against the
// playlist's own URL: a query string would be dropped on the way, but a path prefix is inherited.
// So one signature, which covers the channel's whole prefix, serves the master playlist, the
// variant playlists and every segment of the channel until it expires. Channel names start with
// a letter or a digit, so no channel can be called `_s` and shadow the signed paths.

/** First part of the object keys of public channels: `live/<channel>/...`. */
export const PUBLIC_KEY_PREFIX = 'live';

/** First part of the object keys of private channels: `private/<channel>/...`. */
export const PRIVATE_KEY_PREFIX = 'private';

/** Path under which the edge serves private channels' objects to holders of a signature. */
export const SIGNED_PATH_PREFIX = '/live/_s';

/** Length of a signature: an MD5 digest in unpadded base64url, as nginx's secure_link reads it. */
export const SIGNATURE_LENGTH = 22;

// The secret is written verbatim into the nginx config, where "$" would start a variable and
// quotes or spaces would end the token, so it is limited to letters and digits.
/** A playback signing secret: 32 to 256 letters and digits (the api generates 64 hex digits). */
export const playbackSigningSecretSchema = z
  .string()
  .regex(/^[A-Za-z0-9]{32,256}$/, 'must be 32 to 256 letters and digits');

// The same character set as channel names in @hearth/protocol; the edge's signed location
// matches it too, so a name that would not match there is refused here first.
/** Pattern of a channel name inside a signed path (no anchors, for embedding). */
export const CHANNEL_NAME_PATTERN = '[A-Za-z0-9][A-Za-z0-9_-]{0,63}';

const channelNameSchema = z.string().regex(new RegExp(`^${CHANNEL_NAME_PATTERN}$`));

/** Object key prefix of a channel's HLS objects, without leading or trailing slash. */
export function storagePrefixOf(channel: string, isPrivate: boolean): string {
  return `${isPrivate ? PRIVATE_KEY_PREFIX : PUBLIC_KEY_PREFIX}/${channel}`;
}

/**
 * The string whose MD5 is a signature: the expiry, the private key prefix of the channel and
 * the secret. nginx's `secure_link_md5` in the generated edge builds the same string.
 */
export function signedString(channel: string, expiresAtSeconds: number, secret: string): string {
  return `${expiresAtSeconds}:${PRIVATE_KEY_PREFIX}/${channel}:${secret}`;
}

/**
 * The signed path prefix of a private channel, valid until `expiresAtSeconds` (Unix time):
 * `/live/_s/<signature>/<expires>/<channel>`; append `/master.m3u8` for its master playlist.
 */
export function signedChannelPath(options: {
  channel: string;
  expiresAtSeconds: number;
  secret: string;
}): string {
  // The messages name what is wrong without repeating the value: one of them is the secret.
  if (!playbackSigningSecretSchema.safeParse(options.secret).success) {
    throw new TypeError('the playback signing secret must be 32 to 256 letters and digits');
  }
  if (!channelNameSchema.safeParse(options.channel).success) {
    throw new TypeError('channel must be a channel name');
  }
  const { channel, secret } = options;
  if (!Number.isSafeInteger(options.expiresAtSeconds) || options.expiresAtSeconds <= 0) {
    throw new TypeError('expiresAtSeconds must be a positive whole number of seconds');
  }
  const signature = createHash('md5')
    .update(signedString(channel, options.expiresAtSeconds, secret))
    .digest('base64url');
  return `${SIGNED_PATH_PREFIX}/${signature}/${options.expiresAtSeconds}/${channel}`;
}
