import { z } from 'zod';
import { channelNameSchema, participantSchema } from './common';
import { rtpCapabilitiesSchema } from './rtp';

/** A channel as listed by the REST API. */
export const channelSchema = z.object({
  name: channelNameSchema,
  createdAt: z.string(),
  participants: z.array(participantSchema),
});

/** A channel as listed by the REST API. */
export type Channel = z.infer<typeof channelSchema>;

/** Response of `GET /api/channels`. */
export const channelListSchema = z.object({ channels: z.array(channelSchema) });

/** Response of `GET /api/channels`. */
export type ChannelList = z.infer<typeof channelListSchema>;

/** Body of `POST /api/channels`. */
export const createChannelBodySchema = z.object({ name: channelNameSchema }).strict();

/** Body of `POST /api/channels`. */
export type CreateChannelBody = z.infer<typeof createChannelBodySchema>;

/** Response of `GET /api/health` and `GET /api/ready`. */
export const healthSchema = z.object({
  status: z.enum(['ok', 'unavailable']),
  checks: z.record(z.string(), z.boolean()),
});

/** Response of `GET /api/health` and `GET /api/ready`. */
export type Health = z.infer<typeof healthSchema>;

/** Response of `GET /api/voice/capabilities`: what a device loads before it joins. */
export const voiceCapabilitiesSchema = z.object({ rtpCapabilities: rtpCapabilitiesSchema });

/** Response of `GET /api/voice/capabilities`. */
export type VoiceCapabilities = z.infer<typeof voiceCapabilitiesSchema>;
