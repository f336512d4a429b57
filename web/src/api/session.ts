import { z } from 'zod';
import { shallowRef, type ShallowRef } from 'vue';
import { authUserSchema, tokenResponseSchema, type AuthUser } from '@hearth/protocol';

// The signed-in session lives in localStorage, so every tab shares it and it survives reloads.
// Tokens are read from storage on every use: another tab may have rotated them meanwhile.
const STORAGE_KEY = 'hearth.session';
// An access token this close to its expiry is refreshed before use rather than sent.
const EXPIRY_MARGIN_MS = 30_000;
// Held while refreshing, so two tabs never present the same single-use refresh token at once
// (the server would take the second for a stolen token and sign both out).
const REFRESH_LOCK = 'hearth.session.refresh';

/**
 * Name of the guest that reads needing no particular name (the channel list, a stream's status,
 * its events) go as while nobody is signed in.
 */
export const DEFAULT_GUEST_NAME = 'Viewer';

const storedSessionSchema = z.object({
  accessToken: z.string(),
  refreshToken: z.string(),
  /** Epoch milliseconds at which the access token expires. */
  accessExpiresAt: z.number(),
  user: authUserSchema,
});

type StoredSession = z.infer<typeof storedSessionSchema>;

function readSession(): StoredSession | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (raw === null) return null;
    const parsed = storedSessionSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function writeSession(session: StoredSession | null): void {
  try {
    if (session) localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage can be unavailable (private modes, full quota): the session then ends with the page.
  }
  signedInUser.value = session?.user ?? null;
}

/** The signed-in account, or null for a guest; follows sign-ins and sign-outs in other tabs. */
export const signedInUser: ShallowRef<AuthUser | null> = shallowRef(readSession()?.user ?? null);

window.addEventListener('storage', (event) => {
  if (event.key === STORAGE_KEY || event.key === null) {
    signedInUser.value = readSession()?.user ?? null;
  }
});

/** Keeps the tokens of a login, registration or refresh answer. */
export function saveSession(answer: unknown): AuthUser {
  const tokens = tokenResponseSchema.parse(answer);
  writeSession({
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessExpiresAt: Date.now() + tokens.expiresIn * 1000,
    user: tokens.user,
  });
  return tokens.user;
}

/** Forgets the session (sign-out); the next calls go as a guest. Returns its refresh token. */
export function clearSession(): string | undefined {
  const refreshToken = readSession()?.refreshToken;
  writeSession(null);
  return refreshToken;
}

let refreshing: Promise<StoredSession | null> | null = null;

/**
 * Trades the stored refresh token for new tokens; resolves with null once the session is gone
 * (signed out elsewhere, expired or revoked). `staleAccessToken` is the token a request was
 * refused with: when another tab has stored a newer one meanwhile, that one is used instead.
 * Concurrent callers in this tab share one request.
 */
function refresh(staleAccessToken: string | undefined): Promise<StoredSession | null> {
  refreshing ??= withRefreshLock(async () => {
    const current = readSession();
    if (!current) return null;
    const rotatedElsewhere =
      staleAccessToken !== undefined && current.accessToken !== staleAccessToken;
    if (rotatedElsewhere && current.accessExpiresAt - EXPIRY_MARGIN_MS > Date.now()) return current;
    const response = await fetch('/api/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ refreshToken: current.refreshToken }),
    });
    if (response.status === 401) {
      writeSession(null);
      return null;
    }
    if (!response.ok) throw new Error(`refreshing the session failed (HTTP ${response.status})`);
    saveSession(await response.json());
    return readSession();
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function withRefreshLock<T>(work: () => Promise<T>): Promise<T> {
  // Web Locks reach across tabs; where they are missing, the in-tab promise sharing still holds.
  if (!navigator.locks) return work();
  let result: T | undefined;
  await navigator.locks.request(REFRESH_LOCK, async () => {
    result = await work();
  });
  return result as T;
}

/**
 * `Bearer <access token>` while signed in, refreshed first when it is about to expire; undefined
 * for guests. The voice client sends it when it connects.
 */
export async function currentAuthorization(): Promise<string | undefined> {
  let session = readSession();
  if (session && session.accessExpiresAt - EXPIRY_MARGIN_MS <= Date.now()) {
    session = await refresh(session.accessToken);
  }
  return session ? `Bearer ${session.accessToken}` : undefined;
}

/**
 * After a request was refused with 401 although it carried `authorization`: refreshes once and
 * resolves with the new `Bearer` value, or undefined when the session is over.
 */
export async function renewAuthorization(authorization: string): Promise<string | undefined> {
  const session = await refresh(authorization.replace(/^Bearer /, ''));
  return session ? `Bearer ${session.accessToken}` : undefined;
}

/**
 * Query parameters that authenticate a WebSocket, which cannot carry headers: the access token
 * while signed in, otherwise the guest's display name.
 */
export async function webSocketCredentials(
  guestName: string = DEFAULT_GUEST_NAME,
): Promise<URLSearchParams> {
  const authorization = await currentAuthorization().catch(() => undefined);
  return new URLSearchParams(
    authorization === undefined
      ? { name: guestName }
      : { access_token: authorization.replace(/^Bearer /, '') },
  );
}
