// Browsers always send Origin on WebSocket upgrades; refusing foreign origins stops other sites
// from opening sessions with a visitor's credentials. Non-browser clients send none.

/** Whether a WebSocket upgrade's Origin is this host or one of the allowed extra origins. */
export function originAllowed(origin: string, host: string, allowed: readonly string[]): boolean {
  if (!origin) return true;
  if (allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
