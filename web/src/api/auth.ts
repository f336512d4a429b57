import {
  describeZodError,
  meSchema,
  type AuthUser,
  type LoginBody,
  type Me,
  type RegisterBody,
} from '@hearth/protocol';
import { invalidResponse, readJson, send } from './http';
import { clearSession, saveSession } from './session';

async function startSession(path: string, body: LoginBody | RegisterBody): Promise<AuthUser> {
  const response = await send(
    path,
    { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) },
    { anonymous: true },
  );
  const answer = await readJson(response);
  try {
    return saveSession(answer);
  } catch {
    throw invalidResponse(response, 'not a token response');
  }
}

/** Signs in with a username and password and keeps the session. */
export function login(body: LoginBody): Promise<AuthUser> {
  return startSession('/api/auth/login', body);
}

/** Creates an account, signs it in and keeps the session. */
export function register(body: RegisterBody): Promise<AuthUser> {
  return startSession('/api/auth/register', body);
}

/**
 * Signs out: forgets the session in every tab, and revokes its refresh tokens on the server,
 * which also clears the refresh cookie.
 */
export async function logout(): Promise<void> {
  clearSession();
  await send('/api/auth/logout', { method: 'POST' }, { anonymous: true });
}

/** Who the server takes this client for, with its grants. */
export async function fetchMe(signal?: AbortSignal): Promise<Me> {
  const response = await send('/api/auth/me', { signal });
  const body = meSchema.safeParse(await readJson(response));
  if (!body.success) throw invalidResponse(response, describeZodError(body.error));
  return body.data;
}
