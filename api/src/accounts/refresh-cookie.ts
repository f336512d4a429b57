import type { ParameterizedContext } from 'koa';
import { refreshBodySchema } from '@hearth/protocol';

/** Name of the cookie that carries a browser's refresh token. */
export const REFRESH_COOKIE = 'hearth_refresh';

/** The only path the browser sends the cookie to: the auth routes that read it. */
export const REFRESH_COOKIE_PATH = '/api/auth';

/**
 * Hands a browser its refresh token as a cookie scripts cannot read (`HttpOnly`), sent only to
 * the auth routes and never with a request another site started (`SameSite=Strict`), and only
 * over TLS when the request came over TLS (`Secure`).
 */
export function setRefreshCookie(
  ctx: ParameterizedContext,
  token: string,
  options: { maxAgeSeconds: number; secure: boolean },
): void {
  ctx.append('Set-Cookie', serialize(token, options.maxAgeSeconds, options.secure));
}

/** Tells the browser to drop its refresh cookie. */
export function clearRefreshCookie(ctx: ParameterizedContext, secure: boolean): void {
  ctx.append('Set-Cookie', serialize('', 0, secure));
}

/** The refresh token of the request's cookie, if it sent a well-formed one. */
export function refreshCookieOf(ctx: ParameterizedContext): string | undefined {
  const parsed = refreshBodySchema.shape.refreshToken.safeParse(ctx.cookies.get(REFRESH_COOKIE));
  return parsed.success ? parsed.data : undefined;
}

// Refresh tokens are base64url text, which needs no cookie escaping.
function serialize(value: string, maxAgeSeconds: number, secure: boolean): string {
  return [
    `${REFRESH_COOKIE}=${value}`,
    `Path=${REFRESH_COOKIE_PATH}`,
    `Max-Age=${maxAgeSeconds}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}
