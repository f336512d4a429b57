// Request helpers shared by tests and by processes outside vitest (benchmarks, spawned apis): no
// vitest import here, so a wrong answer throws an Error.
import { guestSessionSchema, type SharePresetId } from '@hearth/protocol';

/** Operator token of every test api (`startTestApi` configures it). */
export const TEST_ADMIN_TOKEN = 'test-operator-token-0123456789abcdef0123456789abcdef';

/** Headers of an account's (or the operator's) bearer token. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** Headers of the operator token, which holds every grant. */
export function operator(): Record<string, string> {
  return bearer(TEST_ADMIN_TOKEN);
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

/** Starts a guest session under a display name and resolves with its headers. */
export async function guestSession(baseUrl: string, name: string): Promise<Record<string, string>> {
  const response = await sendJson(`${baseUrl}/api/auth/guest`, 'POST', { displayName: name });
  if (response.status !== 201) {
    throw new Error(`guest session refused with ${response.status}: ${await response.text()}`);
  }
  return bearer(guestSessionSchema.parse(await response.json()).accessToken);
}

/** Creates a channel with the operator token unless it exists. */
export async function ensureChannel(baseUrl: string, name: string): Promise<void> {
  const response = await sendJson(`${baseUrl}/api/channels`, 'POST', { name }, operator());
  if (response.status !== 201 && response.status !== 409) {
    throw new Error(`creating channel ${name} failed with ${response.status}`);
  }
}

/** Creates a channel unless it exists, with its screen shares capped at `preset`. */
export async function ensureCappedChannel(
  baseUrl: string,
  name: string,
  preset: SharePresetId,
): Promise<void> {
  await ensureChannel(baseUrl, name);
  const response = await sendJson(
    `${baseUrl}/api/channels/${name}`,
    'PATCH',
    { maxSharePreset: preset },
    operator(),
  );
  if (response.status !== 200) {
    throw new Error(`capping the shares of channel ${name} failed with ${response.status}`);
  }
}
