import {
  channelListSchema,
  channelSchema,
  describeZodError,
  errorBodySchema,
  voiceCapabilitiesSchema,
  type Channel,
  type CreateChannelBody,
  type RtpCapabilities,
} from '@hearth/protocol';

/** A REST call that failed, with the server's error code when it sent one. */
export class ApiError extends Error {
  /** The server's machine-readable code, or `network`/`invalid_response` for local failures. */
  readonly code: string;
  /** HTTP status, or 0 when no response arrived. */
  readonly status: number;

  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
  }
}

/** Lists every channel with the people in it. */
export async function listChannels(signal?: AbortSignal): Promise<Channel[]> {
  const response = await send('/api/channels', { signal });
  const body = channelListSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data.channels;
}

/** Creates a channel, acting as the named guest. */
export async function createChannel(name: string, displayName: string): Promise<Channel> {
  const body: CreateChannelBody = { name };
  const response = await send('/api/channels', {
    method: 'POST',
    headers: { ...guestAuthorization(displayName), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const channel = channelSchema.safeParse(await readJson(response));
  if (!channel.success) throw invalidResponse(response, describeZodError(channel.error));
  return channel.data;
}

/** Deletes a channel, acting as the named guest; everyone in it is told it closed. */
export async function deleteChannel(name: string, displayName: string): Promise<void> {
  await send(`/api/channels/${encodeURIComponent(name)}`, {
    method: 'DELETE',
    headers: guestAuthorization(displayName),
  });
}

/** Fetches the RTP capabilities every voice device loads before joining. */
export async function fetchVoiceCapabilities(): Promise<RtpCapabilities> {
  const response = await send('/api/voice/capabilities', {});
  const body = voiceCapabilitiesSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data.rtpCapabilities;
}

// Guests have no account yet: they authenticate REST calls with their display name.
function guestAuthorization(displayName: string): Record<string, string> {
  return { Authorization: `Guest ${encodeURIComponent(displayName)}` };
}

// Paths are relative, so the calls go to the origin that served the app.
async function send(path: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, {
      ...init,
      headers: { Accept: 'application/json', ...init.headers },
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError('network', 0, 'the server cannot be reached');
  }
  if (response.ok) return response;
  const body = errorBodySchema.safeParse(await readJson(response).catch(() => null));
  if (body.success)
    throw new ApiError(body.data.error.code, response.status, body.data.error.message);
  throw new ApiError('http', response.status, `the server answered ${response.status}`);
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    throw invalidResponse(response, 'the body is not JSON');
  }
}

function invalidResponse(response: Response, detail: string): ApiError {
  return new ApiError('invalid_response', response.status, `unexpected response: ${detail}`);
}
