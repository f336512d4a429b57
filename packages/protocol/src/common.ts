import { z } from 'zod';

/** A channel name as it appears in URLs: letters, digits, dash and underscore, 1 to 64 chars. */
export const channelNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, "-" or "_"');

/** A participant's display name as shown to others. */
export const displayNameSchema = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(32, 'must be at most 32 characters')
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

/** Grants a caller can hold in a channel. */
export const grantSchema = z.enum(['join', 'speak', 'screen-share', 'moderate', 'stream']);

/** One channel grant. */
export type Grant = z.infer<typeof grantSchema>;

/** The public view of one participant in a voice channel. */
export const participantSchema = z.object({
  id: z.string(),
  displayName: z.string(),
  muted: z.boolean(),
  deafened: z.boolean(),
  serverMuted: z.boolean(),
});

/** The public view of one participant in a voice channel. */
export type Participant = z.infer<typeof participantSchema>;
