import { expect } from 'vitest';
import { errorBodySchema, tokenResponseSchema, type TokenResponse } from '@hearth/protocol';
import { sendJson } from './sessions';

/** A password every test account uses unless a test needs another. */
export const TEST_PASSWORD = 'correct horse battery staple';

export {
  TEST_ADMIN_TOKEN,
  bearer,
  ensureChannel,
  guestSession,
  operator,
  sendJson,
} from './sessions';

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
