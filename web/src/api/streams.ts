import {
  channelStreamSchema,
  describeZodError,
  issuedStreamKeySchema,
  streamKeyDetailsSchema,
  type ChannelStream,
  type IssuedStreamKey,
  type StreamKeyDetails,
} from '@hearth/protocol';
import { ApiError, invalidResponse, readJson, send } from './http';

/** Fetches a channel's stream: the current or just ended one, or none while it is offline. */
export async function fetchChannelStream(
  channel: string,
  signal?: AbortSignal,
): Promise<ChannelStream> {
  const response = await send(`${channelPath(channel)}/stream`, { signal });
  const body = channelStreamSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data;
}

/**
 * Fetches the channel's stream key, without its secret; null when the channel has none. While
 * nobody is signed in it asks as the guest named `displayName`.
 */
export async function fetchStreamKey(
  channel: string,
  displayName: string,
  signal?: AbortSignal,
): Promise<StreamKeyDetails | null> {
  let response: Response;
  try {
    response = await send(
      `${channelPath(channel)}/stream-key`,
      { signal },
      { guestName: displayName },
    );
  } catch (error) {
    if (error instanceof ApiError && error.code === 'not_found') return null;
    throw error;
  }
  const body = streamKeyDetailsSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data;
}

/** Issues the channel's first stream key; fails with `conflict` when it already has one. */
export function createStreamKey(channel: string, displayName: string): Promise<IssuedStreamKey> {
  return issueKey(`${channelPath(channel)}/stream-key`, displayName);
}

/** Replaces the channel's stream key; a live stream that used the old key ends. */
export function rotateStreamKey(channel: string, displayName: string): Promise<IssuedStreamKey> {
  return issueKey(`${channelPath(channel)}/stream-key/rotate`, displayName);
}

/** Removes the channel's stream key; a live stream that used it ends. */
export async function revokeStreamKey(channel: string, displayName: string): Promise<void> {
  await send(
    `${channelPath(channel)}/stream-key`,
    { method: 'DELETE' },
    { guestName: displayName },
  );
}

// Creating and rotating answer alike: the new key with its secret, which is never shown again.
async function issueKey(path: string, displayName: string): Promise<IssuedStreamKey> {
  const response = await send(path, { method: 'POST' }, { guestName: displayName });
  const body = issuedStreamKeySchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data;
}

function channelPath(channel: string): string {
  return `/api/channels/${encodeURIComponent(channel)}`;
}
