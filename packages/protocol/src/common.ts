import { z } from 'zod';
import { normalizeDisplayName } from './display-names';

/** A channel name as it appears in URLs: letters, digits, dash and underscore, 1 to 64 chars. */
export const channelNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, "-" or "_"');

/**
 * A participant's display name as shown to others, normalized (`normalizeDisplayName`): NFC, no
 * invisible or bidi control characters, single spaces.
 */
export const displayNameSchema = z
  .string()
  .max(256, 'must be at most 32 characters')
  .transform(normalizeDisplayName)
  .pipe(
    z
      .string()
      .min(1, 'must not be empty')
      .max(32, 'must be at most 32 characters')
      .regex(/^[^\p{Cc}\p{Cf}\p{Cs}\p{Co}]+$/u, 'must not contain control characters'),
  );

/** Grants a caller can hold in a channel. */
export const grantSchema = z.enum(['join', 'speak', 'screen-share', 'moderate', 'stream']);

/** One channel grant. */
export type Grant = z.infer<typeof grantSchema>;

/**
 * Roles, lowest first. Accounts are stored as owner, admin or member; moderator comes from the
 * `moderate` grant (server-wide, or in one channel); `operator` is the operator token.
 */
export const roleSchema = z.enum(['guest', 'member', 'moderator', 'admin', 'owner', 'operator']);

/** A role. */
export type Role = z.infer<typeof roleSchema>;

/** Each role's rank: someone may act on (mute, kick, ban, change) only those ranked below. */
export const RANKS: Readonly<Record<Role, number>> = {
  guest: 0,
  member: 1,
  moderator: 2,
  admin: 3,
  owner: 4,
  operator: 5,
};

/** How well a participant's connection carries voice, as rosters show it. */
export const linkQualitySchema = z.enum(['good', 'fair', 'poor']);

/** How well a participant's connection carries voice. */
export type LinkQuality = z.infer<typeof linkQualitySchema>;

/** The public view of one participant in a voice channel. */
export const participantSchema = z.object({
  id: z.string(),
  displayName: z.string(),
  muted: z.boolean(),
  deafened: z.boolean(),
  serverMuted: z.boolean(),
  /** A display-name guest, not an account: rosters mark it. */
  guest: z.boolean(),
  /** Standing in the channel (`RANKS`): moderators act only on lower ranks. */
  rank: z.number().int().min(0).max(5),
  /** True while the participant shares a screen. */
  sharing: z.boolean().default(false),
  /** How well its connection carries voice, once it reported its statistics. */
  quality: linkQualitySchema.optional(),
});

/** The public view of one participant in a voice channel. */
export type Participant = z.infer<typeof participantSchema>;
