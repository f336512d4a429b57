import {
  channelListSchema,
  channelSchema,
  describeZodError,
  voiceCapabilitiesSchema,
  type Channel,
  type CreateChannelBody,
  type RtpCapabilities,
  type UpdateChannelBody,
} from '@hearth/protocol';
import { invalidResponse, readJson, send } from './http';

/** Lists every channel with the people in it. */
export async function listChannels(signal?: AbortSignal): Promise<Channel[]> {
  const response = await send('/api/channels', { signal });
  const body = channelListSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data.channels;
}

/** Creates a channel; while nobody is signed in, as the guest named `displayName`. */
export async function createChannel(name: string, displayName: string): Promise<Channel> {
  const body: CreateChannelBody = { name };
  const response = await send(
    '/api/channels',
    { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) },
    { guestName: displayName },
  );
  return parseChannel(response);
}

/**
 * Deletes a channel, and everyone in it is told it closed; while nobody is signed in, as the
 * guest named `displayName`.
 */
export async function deleteChannel(name: string, displayName: string): Promise<void> {
  await send(channelPath(name), { method: 'DELETE' }, { guestName: displayName });
}

/** Fetches one channel: its settings and the people in it. */
export async function fetchChannel(name: string, signal?: AbortSignal): Promise<Channel> {
  const response = await send(channelPath(name), { signal });
  return parseChannel(response);
}

/**
 * Changes a channel's settings as a moderator: members only or public, and the heaviest screen
 * share preset it allows. Resolves with the channel as it is now.
 */
export async function updateChannel(name: string, settings: UpdateChannelBody): Promise<Channel> {
  const response = await send(channelPath(name), {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(settings),
  });
  return parseChannel(response);
}

/** Fetches the RTP capabilities every voice device loads before joining. */
export async function fetchVoiceCapabilities(): Promise<RtpCapabilities> {
  const response = await send('/api/voice/capabilities', {});
  const body = voiceCapabilitiesSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data.rtpCapabilities;
}

async function parseChannel(response: Response): Promise<Channel> {
  const channel = channelSchema.safeParse(await readJson(response));
  if (!channel.success) throw invalidResponse(response, describeZodError(channel.error));
  return channel.data;
}

function channelPath(name: string): string {
  return `/api/channels/${encodeURIComponent(name)}`;
}
