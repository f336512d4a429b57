import { send } from './http';

/** Removes a participant from a voice channel; they may join again. */
export async function kickParticipant(channel: string, peerId: string): Promise<void> {
  await send(`${participantPath(channel, peerId)}/kick`, { method: 'POST' });
}

/**
 * Removes a participant and bars them from joining again: from this channel, or from every
 * channel when `serverWide` is set.
 */
export async function banParticipant(
  channel: string,
  peerId: string,
  serverWide: boolean,
): Promise<void> {
  await send(`${participantPath(channel, peerId)}/ban`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ serverWide }),
  });
}

function participantPath(channel: string, peerId: string): string {
  return `/api/channels/${encodeURIComponent(channel)}/participants/${encodeURIComponent(peerId)}`;
}
