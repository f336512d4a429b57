import { errorBodySchema } from '@hearth/protocol';
import { currentAuthorization, renewAuthorization } from './session';

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

/** Whom a request goes as, besides a signed-in account, which always acts as itself. */
export interface SendOptions {
  /**
   * Display name of the guest session the request goes as while nobody is signed in; the
   * guest's current name, or the remembered one, when left out.
   */
  guestName?: string;
  /** Sends no credentials: signing in, registering and signing out need none. */
  anonymous?: true;
}

async function attempt(path: string, init: RequestInit, headers: Headers): Promise<Response> {
  try {
    // Paths are relative, so the calls go to the origin that served the app, with its cookies.
    return await fetch(path, { ...init, headers, credentials: 'same-origin' });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError('network', 0, 'the server cannot be reached');
  }
}

/**
 * Sends a request to this origin and resolves with a successful response; a failure becomes an
 * `ApiError` carrying the server's code. An abort is passed through as the `AbortError` it is.
 * It carries the account's access token while signed in, otherwise a guest session's; when the
 * server refuses that with 401, it is renewed once and the request sent again.
 */
export async function send(
  path: string,
  init: RequestInit,
  options: SendOptions = {},
): Promise<Response> {
  const headersWith = (authorization: string | undefined) => {
    const headers = new Headers(init.headers);
    headers.set('Accept', 'application/json');
    if (authorization !== undefined) headers.set('Authorization', authorization);
    return headers;
  };
  const authorization = options.anonymous
    ? undefined
    : await currentAuthorization(options.guestName).catch(() => undefined);
  let response = await attempt(path, init, headersWith(authorization));
  if (response.status === 401 && authorization !== undefined) {
    const renewed = await renewAuthorization(authorization, options.guestName).catch(
      () => undefined,
    );
    if (renewed !== undefined) response = await attempt(path, init, headersWith(renewed));
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
