import { expect } from 'vitest';
import {
  errorBodySchema,
  guestSessionSchema,
  tokenResponseSchema,
  type TokenResponse,
} from '@hearth/protocol';

/** A password every test account uses unless a test needs another. */
export const TEST_PASSWORD = 'correct horse battery staple';

/** Headers of an account's (or the operator's) bearer token. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** Operator token of every test api (`startTestApi` configures it). */
export const TEST_ADMIN_TOKEN = 'test-operator-token-0123456789abcdef0123456789abcdef';

/** Headers of the operator token, which holds every grant. */
export function operator(): Record<string, string> {
  return bearer(TEST_ADMIN_TOKEN);
}

/** Starts a guest session under a display name and resolves with its headers. */
export async function guestSession(baseUrl: string, name: string): Promise<Record<string, string>> {
  const response = await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: name });
  expect(response.status).toBe(201);
  return bearer(guestSessionSchema.parse(await response.json()).accessToken);
}

/** Creates a channel with the operator token unless it exists. */
export async function ensureChannel(baseUrl: string, name: string): Promise<void> {
  const response = await sendJson(`${baseUrl}/api/channels`, 'POST', { name }, operator());
  expect([201, 409]).toContain(response.status);
}

/** Sends a JSON request. */
export function sendJson(
  url: string,
  method: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** Registers an account and resolves with its tokens; fails the test on any other answer. */
export async function registerAccount(
  baseUrl: string,
  username: string,
  extra: { password?: string; displayName?: string } = {},
): Promise<TokenResponse> {
  const response = await sendJson(`${baseUrl}/api/auth/register`, 'POST', {
    username,
    password: extra.password ?? TEST_PASSWORD,
    ...(extra.displayName === undefined ? {} : { displayName: extra.displayName }),
  });
  expect(response.status).toBe(201);
  return tokenResponseSchema.parse(await response.json());
}

/** Logs an account in and resolves with its tokens; fails the test on any other answer. */
export async function loginAccount(
  baseUrl: string,
  username: string,
  password = TEST_PASSWORD,
): Promise<TokenResponse> {
  const response = await sendJson(`${baseUrl}/api/auth/login`, 'POST', { username, password });
  expect(response.status).toBe(200);
  return tokenResponseSchema.parse(await response.json());
}

/** Checks an error answer's status and code, and resolves with its message. */
export async function expectError(
  response: Response,
  status: number,
  code: string,
): Promise<string> {
  expect(response.status).toBe(status);
  const body = errorBodySchema.parse(await response.json());
  expect(body.error.code).toBe(code);
  return body.error.message;
}
