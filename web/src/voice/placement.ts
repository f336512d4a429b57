import {
  describeZodError,
  voiceJoinSchema,
  type VoiceJoin,
  type VoiceJoinBody,
} from '@hearth/protocol';
import { ApiError, invalidResponse, readJson, send } from '../api/http';

/** Asks the api which node serves a channel for this client, and for a join token to it. */
export type LocateVoiceNode = (avoid: string[]) => Promise<VoiceJoin>;

/**
 * The default locator: `POST /api/voice/join` as the signed-in account, or else as a guest
 * session under `displayName`.
 */
export function locateAsGuest(channel: string, displayName: string): LocateVoiceNode {
  return (avoid) => requestPlacement({ channel, avoid }, displayName);
}

/**
 * The locator of a spectator, who receives the channel's screen shares without joining voice:
 * as the signed-in account, or else as a guest session under `guestName` (the guest's current
 * or remembered name when left out).
 */
export function locateAsSpectator(channel: string, guestName?: string): LocateVoiceNode {
  return (avoid) => requestPlacement({ channel, avoid, spectate: true }, guestName);
}

async function requestPlacement(body: VoiceJoinBody, guestName?: string): Promise<VoiceJoin> {
  const response = await send(
    '/api/voice/join',
    {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    },
    { guestName },
  );
  const placement = voiceJoinSchema.safeParse(await readJson(response));
  if (!placement.success) throw invalidResponse(response, describeZodError(placement.error));
  return placement.data;
}

/** The signaling WebSocket URL of a placement, resolved against this page's origin. */
export function signalingUrlOf(placement: VoiceJoin): string {
  const url = new URL(placement.url, location.href);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  url.searchParams.set('token', placement.token);
  return url.href;
}

/** True when a placement failure is the caller's own (no access, bad input), not transient. */
export function isFinalPlacementError(error: unknown): boolean {
  return (
    error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429
  );
}
