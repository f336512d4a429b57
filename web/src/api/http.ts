import { errorBodySchema } from '@hearth/protocol';
import { DEFAULT_GUEST_NAME, currentAuthorization, renewAuthorization } from './session';

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

/**
 * The Authorization header of a display-name guest. `send` uses it only while nobody is signed
 * in: a signed-in account always acts as itself.
 */
export function guestAuthorization(displayName: string): Record<string, string> {
  return { Authorization: `Guest ${encodeURIComponent(displayName)}` };
}

async function attempt(path: string, init: RequestInit, headers: Headers): Promise<Response> {
  try {
    // Paths are relative, so the calls go to the origin that served the app.
    return await fetch(path, { ...init, headers });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError('network', 0, 'the server cannot be reached');
  }
}

/**
 * Sends a request to this origin and resolves with a successful response; a failure becomes an
 * `ApiError` carrying the server's code. An abort is passed through as the `AbortError` it is.
 * While signed in it carries the account's access token, refreshed once if the server refuses
 * it; otherwise the guest `Authorization` of `init`, or a default guest name.
 */
export async function send(path: string, init: RequestInit): Promise<Response> {
  const guestHeaders = new Headers(init.headers);
  guestHeaders.set('Accept', 'application/json');
  if (!guestHeaders.has('Authorization')) {
    guestHeaders.set('Authorization', guestAuthorization(DEFAULT_GUEST_NAME).Authorization!);
  }
  const withAuthorization = (authorization: string | undefined) => {
    if (authorization === undefined) return guestHeaders;
    const headers = new Headers(guestHeaders);
    headers.set('Authorization', authorization);
    return headers;
  };
  const authorization = await currentAuthorization().catch(() => undefined);
  let response = await attempt(path, init, withAuthorization(authorization));
  if (response.status === 401 && authorization !== undefined) {
    const renewed = await renewAuthorization(authorization).catch(() => undefined);
    response = await attempt(path, init, withAuthorization(renewed));
  }
  if (response.ok) return response;
  const body = errorBodySchema.safeParse(await readJson(response).catch(() => null));
  if (body.success)
    throw new ApiError(body.data.error.code, response.status, body.data.error.message);
  throw new ApiError('http', response.status, `the server answered ${response.status}`);
}

/** Reads a response body as JSON; anything else is an `invalid_response` error. */
export async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    throw invalidResponse(response, 'the body is not JSON');
  }
}

/** The error for a response whose body does not match what the endpoint promises. */
export function invalidResponse(response: Response, detail: string): ApiError {
  return new ApiError('invalid_response', response.status, `unexpected response: ${detail}`);
}
