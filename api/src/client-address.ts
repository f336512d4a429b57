import { BlockList, isIP } from 'node:net';
import type { Middleware } from 'koa';
import { z } from 'zod';

/** One range of trusted proxy addresses. */
export interface AddressRange {
  /** Network address, IPv4 or IPv6. */
  readonly address: string;
  /** Prefix length: 0-32 for IPv4, 0-128 for IPv6. */
  readonly prefix: number;
  /** Address family. */
  readonly family: 'ipv4' | 'ipv6';
}

/** A CIDR such as `10.0.0.0/8` or `fd00::/8`; a bare address means that address alone. */
export const addressRangeSchema = z
  .string()
  .trim()
  .transform((text, context): AddressRange => {
    const [address = '', prefixText, extra] = text.split('/');
    const version = isIP(address);
    const maxPrefix = version === 6 ? 128 : 32;
    const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
    if (
      version === 0 ||
      extra !== undefined ||
      !/^\d{1,3}$/.test(prefixText ?? '0') ||
      prefix > maxPrefix
    ) {
      context.addIssue({
        code: 'custom',
        message: `"${text}" is not an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8`,
      });
      return z.NEVER;
    }
    return { address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' };
  });

/** Comma-separated CIDRs (`API_TRUSTED_PROXIES`); empty trusts no proxy. */
export const addressRangeListSchema = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((range) => range.trim())
      .filter(Boolean),
  )
  .pipe(z.array(addressRangeSchema));

/** Where a request came from, once trusted proxies are seen through. */
export interface ClientAddress {
  /** The client's IP address: the peer itself, or the hop a trusted proxy vouches for. */
  readonly address: string;
  /** Whether the client reached us over TLS: our own socket, or a trusted proxy's word. */
  readonly secure: boolean;
}

/** What `resolveClient` reads from one request. */
export interface ForwardingFacts {
  /** Address of the socket's peer. */
  readonly peer: string;
  /** Whether our own socket is TLS. */
  readonly encrypted: boolean;
  /** `X-Forwarded-For` header, if any. */
  readonly forwardedFor?: string | undefined;
  /** `X-Forwarded-Proto` header, if any. */
  readonly forwardedProto?: string | undefined;
}

/** The trusted proxies of `API_TRUSTED_PROXIES`, for `resolveClient`. */
export function trustedProxies(ranges: readonly AddressRange[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) list.addSubnet(range.address, range.prefix, range.family);
  return list;
}

/**
 * The client behind a request. Forwarding headers count only when the direct peer is a trusted
 * proxy: then `X-Forwarded-For` is read from the right, each trusted hop handing over to the one
 * before it, and the first untrusted hop is the client; everything left of it was written by that
 * client and is ignored. `X-Forwarded-Proto` is taken from the nearest proxy (its last value).
 */
export function resolveClient(facts: ForwardingFacts, trusted: BlockList): ClientAddress {
  const peer = plainAddress(facts.peer);
  if (!isTrusted(peer, trusted)) return { address: peer, secure: facts.encrypted };
  const hops = (facts.forwardedFor ?? '')
    .split(',')
    .map((hop) => plainAddress(hop.trim()))
    .filter(Boolean);
  let address = peer;
  for (const hop of hops.reverse()) {
    // A hop that is no address was never written by a proxy; the last good hop is all we know.
    if (isIP(hop) === 0) break;
    address = hop;
    if (!isTrusted(hop, trusted)) break;
  }
  const proto = facts.forwardedProto?.split(',').at(-1)?.trim().toLowerCase();
  return { address, secure: facts.encrypted || proto === 'https' };
}

/**
 * Resolves each request's client into `ctx.state.client`, and makes Koa's `ctx.ip` say the same,
 * so rate limits and logs key on the real client and not on the load balancer.
 */
export function clientAddress(trusted: BlockList): Middleware {
  return async (ctx, next) => {
    const client = resolveClient(
      {
        peer: ctx.req.socket.remoteAddress ?? '',
        encrypted: 'encrypted' in ctx.req.socket && ctx.req.socket.encrypted === true,
        forwardedFor: ctx.get('x-forwarded-for') || undefined,
        forwardedProto: ctx.get('x-forwarded-proto') || undefined,
      },
      trusted,
    );
    ctx.state.client = client;
    ctx.request.ip = client.address;
    await next();
  };
}

function isTrusted(address: string, trusted: BlockList): boolean {
  const version = isIP(address);
  return version !== 0 && trusted.check(address, version === 6 ? 'ipv6' : 'ipv4');
}

// IPv4 clients of a dual-stack socket show as `::ffff:a.b.c.d`; one client keeps one key either way.
function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}
