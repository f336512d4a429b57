import { shallowRef, type ShallowRef } from 'vue';
import {
  authUserSchema,
  guestSessionSchema,
  sessionResponseSchema,
  type AuthUser,
  type GuestSession,
} from '@hearth/protocol';

// Tokens live in this page's memory only. An account's session survives reloads through the
// refresh token the server keeps in an httpOnly cookie, which scripts never see; a guest starts a
// new guest session under the display name it last used, which is no secret and stays in
// localStorage.

/** localStorage key of the display name a guest joins with. */
export const DISPLAY_NAME_KEY = 'hearth.displayName';
// Where earlier versions kept the whole session, refresh token included; read once and deleted.
const LEGACY_SESSION_KEY = 'hearth.session';
// The signed-in account's public profile (no token), kept while this browser holds its refresh
// cookie, which scripts cannot see. Pages know at once who is signed in, before the session is
// restored, and a page without it does not ask the server to restore a session that is not there.
const SIGNED_IN_USER_KEY = 'hearth.signedInUser';
// An access token this close to its expiry is renewed before use rather than sent.
const EXPIRY_MARGIN_MS = 30_000;
// Held while refreshing, so two tabs never present the same single-use refresh cookie at once
// (the server would take the second for a stolen token and sign both out).
const REFRESH_LOCK = 'hearth.session.refresh';
// Tabs tell each other of sign-ins and sign-outs, since none can read another's tokens.
const SESSION_CHANNEL = 'hearth.session';

/** Name a guest goes by while it has not chosen one. */
export const DEFAULT_GUEST_NAME = 'Viewer';

interface HeldToken {
  accessToken: string;
  /** Epoch milliseconds at which the access token expires. */
  expiresAt: number;
}

let account: (HeldToken & { user: AuthUser }) | null = null;
// Guest sessions by the name they were asked for: a page may read under one name before it joins
// under another, and each name keeps one identity rather than a new one at every switch.
const guests = new Map<string, HeldToken>();
const MAX_GUEST_SESSIONS = 4;
// The name this tab's guest last chose; reads that name nobody go under it.
let chosenGuestName: string | undefined;

/** The signed-in account, or null for a guest; follows sign-ins and sign-outs in other tabs. */
export const signedInUser: ShallowRef<AuthUser | null> = shallowRef(rememberedUser());

const tabs = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(SESSION_CHANNEL);
tabs?.addEventListener('message', (event: MessageEvent<unknown>) => {
  if (event.data === 'signed-out') setAccount(null);
  if (event.data === 'signed-in') void refresh().catch(() => undefined);
});

function setAccount(next: typeof account): void {
  account = next;
  signedInUser.value = next?.user ?? null;
  try {
    if (next) localStorage.setItem(SIGNED_IN_USER_KEY, JSON.stringify(next.user));
    else localStorage.removeItem(SIGNED_IN_USER_KEY);
  } catch {
    // Without storage every load asks the server, which answers 401 when there is no session.
  }
}

function rememberedUser(): AuthUser | null {
  try {
    const raw = localStorage.getItem(SIGNED_IN_USER_KEY);
    const parsed = authUserSchema.safeParse(raw === null ? null : JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function mayHaveSession(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN_USER_KEY) !== null;
  } catch {
    return true;
  }
}

function expiresAt(expiresInSeconds: number): number {
  return Date.now() + expiresInSeconds * 1000;
}

function fresh(token: HeldToken | null): boolean {
  return token !== null && token.expiresAt - EXPIRY_MARGIN_MS > Date.now();
}

/**
 * Keeps the access token of a login or registration answer (its refresh token is in the cookie
 * the same answer set) and tells the other tabs.
 */
export function saveSession(answer: unknown): AuthUser {
  const session = sessionResponseSchema.parse(answer);
  setAccount({ ...session, expiresAt: expiresAt(session.expiresIn) });
  tabs?.postMessage('signed-in');
  return session.user;
}

/** Forgets the account's session in this tab and the others; the next calls go as a guest. */
export function clearSession(): void {
  setAccount(null);
  tabs?.postMessage('signed-out');
}

let refreshing: Promise<void> | null = null;

/**
 * Trades the refresh cookie (or, once, a refresh token an earlier version stored) for a new
 * access token; the account is gone afterwards when the server refused it. Concurrent callers
 * in this tab share one request.
 */
function refresh(legacyRefreshToken?: string): Promise<void> {
  refreshing ??= withRefreshLock(async () => {
    const response = await fetch('/api/auth/refresh', {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        Accept: 'application/json',
        ...(legacyRefreshToken === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body:
        legacyRefreshToken === undefined
          ? undefined
          : JSON.stringify({ refreshToken: legacyRefreshToken }),
    });
    if (response.status === 401) {
      setAccount(null);
      return;
    }
    if (!response.ok) throw new Error(`refreshing the session failed (HTTP ${response.status})`);
    const session = sessionResponseSchema.parse(await response.json());
    setAccount({ ...session, expiresAt: expiresAt(session.expiresIn) });
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function withRefreshLock(work: () => Promise<void>): Promise<void> {
  // Web Locks reach across tabs; where they are missing, the in-tab promise sharing still holds.
  if (!navigator.locks) return work();
  await navigator.locks.request(REFRESH_LOCK, work);
}

// A refresh token an earlier version kept in localStorage: deleted at once, and used once to
// move the session into the cookie.
function takeLegacyRefreshToken(): string | undefined {
  try {
    const raw = localStorage.getItem(LEGACY_SESSION_KEY);
    localStorage.removeItem(LEGACY_SESSION_KEY);
    const stored: unknown = raw === null ? null : JSON.parse(raw);
    const token = (stored as { refreshToken?: unknown } | null)?.refreshToken;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}

// On load the account's session, if any, comes back from the refresh cookie; every call waits
// for that first, so nothing goes out as a guest by mistake.
const restored: Promise<void> = restoreSession();

async function restoreSession(): Promise<void> {
  const legacyRefreshToken = takeLegacyRefreshToken();
  if (legacyRefreshToken === undefined && !mayHaveSession()) return;
  await refresh(legacyRefreshToken).catch(() => undefined);
}

function storedDisplayName(): string | undefined {
  try {
    return localStorage.getItem(DISPLAY_NAME_KEY)?.trim() || undefined;
  } catch {
    return undefined;
  }
}

const startingGuest = new Map<string, Promise<HeldToken | null>>();

/**
 * The guest session under `name`, started if this tab has none under that name or it is about
 * to expire; null when the server starts none (guest access off, or a name it refuses).
 */
function guestSessionFor(name: string): Promise<HeldToken | null> {
  const held = guests.get(name) ?? null;
  if (fresh(held)) return Promise.resolve(held);
  let starting = startingGuest.get(name);
  if (!starting) {
    starting = startGuestSession(name).finally(() => startingGuest.delete(name));
    startingGuest.set(name, starting);
  }
  return starting;
}

async function startGuestSession(name: string): Promise<HeldToken | null> {
  const response = await fetch('/api/auth/guest', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ displayName: name }),
  });
  if (!response.ok) return null;
  const session: GuestSession = guestSessionSchema.parse(await response.json());
  const held = { accessToken: session.accessToken, expiresAt: expiresAt(session.expiresIn) };
  guests.delete(name);
  if (guests.size >= MAX_GUEST_SESSIONS) guests.delete(guests.keys().next().value!);
  guests.set(name, held);
  return held;
}

// A guest keeps the name it chose last; reads before any choice go under the remembered one.
async function guestAuthorization(guestName: string | undefined): Promise<string | undefined> {
  if (guestName !== undefined) chosenGuestName = guestName;
  const remembered = chosenGuestName ?? storedDisplayName();
  let session = await guestSessionFor(guestName ?? remembered ?? DEFAULT_GUEST_NAME);
  // A remembered name the server refuses is no reason to read nothing.
  if (!session && guestName === undefined && remembered !== undefined) {
    session = await guestSessionFor(DEFAULT_GUEST_NAME);
  }
  return session ? `Bearer ${session.accessToken}` : undefined;
}

/**
 * `Bearer <access token>`: the account's while signed in, renewed first when it is about to
 * expire; otherwise a guest session's, under `guestName` when given. Undefined when there is no
 * account and the server starts no guest session.
 */
export async function currentAuthorization(guestName?: string): Promise<string | undefined> {
  await restored;
  // An account shown as signed in whose session could not be restored yet (the server was out
  // of reach) is tried again, as is one whose token is about to expire.
  if (signedInUser.value !== null && !fresh(account)) await refresh();
  if (account) return `Bearer ${account.accessToken}`;
  return guestAuthorization(guestName);
}

/**
 * After a request was refused with 401 although it carried `authorization`: renews what it
 * carried once (the account's token by refresh, a guest's by a new guest session) and resolves
 * with what to send now, or undefined when there is nothing.
 */
export async function renewAuthorization(
  authorization: string,
  guestName?: string,
): Promise<string | undefined> {
  const refused = authorization.replace(/^Bearer /, '');
  if (account?.accessToken === refused) await refresh();
  for (const [name, held] of guests) {
    if (held.accessToken === refused) guests.delete(name);
  }
  return currentAuthorization(guestName);
}

/**
 * Query parameters that authenticate a WebSocket, which cannot carry headers: the access token
 * of the account, or of the guest session under `guestName`.
 */
export async function webSocketCredentials(guestName?: string): Promise<URLSearchParams> {
  const authorization = await currentAuthorization(guestName).catch(() => undefined);
  return new URLSearchParams(
    authorization === undefined ? {} : { access_token: authorization.replace(/^Bearer /, '') },
  );
}
