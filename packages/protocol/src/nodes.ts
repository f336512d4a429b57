import { z } from 'zod';
import { channelNameSchema, grantSchema } from './common';

/** What a voice join token lets its holder do: join one channel on one node, with its grants. */
export const joinTokenClaimsSchema = z.object({
  /** User id (or generated guest id). */
  sub: z.string().min(1).max(128),
  /** Display name shown to other participants. */
  name: z.string().min(1).max(64),
  /** True for a display-name guest. */
  guest: z.boolean(),
  /** The one channel the token admits to. */
  channel: channelNameSchema,
  /** The voice-sfu node the token is valid on. */
  node: z.string().min(1).max(128),
  /** Grants the holder has in that channel. */
  grants: z.array(grantSchema),
});

/** Claims of a voice join token. */
export type JoinTokenClaims = z.infer<typeof joinTokenClaimsSchema>;
