import type { Middleware } from 'koa';
import type { ApiState } from './middleware';

/** What the web app loads from other origins than its own. */
export interface ContentSources {
  /** Base URL of HLS playback (the CDN edge): playlists are fetched, segments played from it. */
  readonly playbackBaseUrl: string;
  /**
   * Further origins pages may connect to (`API_ALLOWED_ORIGINS`): the signaling URLs of voice
   * nodes that run apart from the api. Each is allowed with its WebSocket scheme too.
   */
  readonly connectOrigins: readonly string[];
}

// Browsers that saw HSTS keep to HTTPS for a year.
const HSTS_MAX_AGE_SECONDS = 365 * 24 * 3600;

/**
 * The Content-Security-Policy of the web app and the API. Scripts and styles come from this
 * origin only: the built app has no inline script or style, and Vue sets element styles through
 * the CSSOM, which style-src does not govern. hls.js plays through Media Source object URLs and
 * runs its transmuxer in a blob: worker. `'self'` covers the api's own WebSockets (`/ws/events`,
 * the embedded `/ws/voice`).
 */
export function contentSecurityPolicy(sources: ContentSources): string {
  const playback = new URL(sources.playbackBaseUrl).origin;
  const connect = sources.connectOrigins.flatMap((origin) => withWebSocketScheme(origin));
  const directives: Record<string, string[]> = {
    'default-src': ["'self'"],
    'script-src': ["'self'"],
    'style-src': ["'self'"],
    'img-src': ["'self'", 'data:', 'blob:'],
    'font-src': ["'self'"],
    'connect-src': ["'self'", playback, ...connect],
    'media-src': ["'self'", 'blob:', playback],
    'worker-src': ["'self'", 'blob:'],
    'object-src': ["'none'"],
    'base-uri': ["'self'"],
    'form-action': ["'self'"],
    'frame-ancestors': ["'none'"],
  };
  return Object.entries(directives)
    .map(([name, values]) => [name, ...new Set(values)].join(' '))
    .join('; ');
}

/**
 * Sets the security headers on every response: the CSP, no framing, no MIME sniffing, no
 * Referer to other sites, and HSTS when the request came over TLS (our socket or a trusted
 * proxy's word, as `clientAddress` decided; it runs first).
 */
export function securityHeaders(sources: ContentSources): Middleware<ApiState> {
  const policy = contentSecurityPolicy(sources);
  return async (ctx, next) => {
    ctx.set('Content-Security-Policy', policy);
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (ctx.state.client.secure) {
      ctx.set('Strict-Transport-Security', `max-age=${HSTS_MAX_AGE_SECONDS}`);
    }
    await next();
  };
}

// A CSP source `https://host` does not match `wss://host`, so each origin goes in both forms.
function withWebSocketScheme(origin: string): string[] {
  const url = new URL(origin);
  const socketScheme = { 'https:': 'wss:', 'http:': 'ws:' }[url.protocol];
  return socketScheme ? [url.origin, `${socketScheme}//${url.host}`] : [url.origin];
}
