import { afterEach, describe, expect, it } from 'vitest';
import { addressRangeListSchema, resolveClient, trustedProxies } from '../src/client-address';
import { loadApiConfig } from '../src/config';
import { startTestApi, type TestApi } from './support/server';

const proxies = trustedProxies(
  addressRangeListSchema.parse('10.0.0.0/8, 127.0.0.1, fd00::/8, 192.168.1.7/32'),
);

describe('API_TRUSTED_PROXIES', () => {
  it('loadApiConfig() reads IPv4 and IPv6 CIDRs, a bare address as a single host', () => {
    expect(loadApiConfig({ API_TRUSTED_PROXIES: '10.0.0.0/8, ::1, fd00::/8' })).toMatchObject({
      trustedProxies: [
        { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
        { address: '::1', prefix: 128, family: 'ipv6' },
        { address: 'fd00::', prefix: 8, family: 'ipv6' },
      ],
    });
    expect(loadApiConfig({}).trustedProxies).toEqual([]);
  });

  it.each([
    ['10.0.0.0/33'],
    ['fd00::/129'],
    ['10.0.0/8'],
    ['example.com'],
    ['10.0.0.0/8/1'],
    ['::1/x'],
  ])('loadApiConfig() refuses %j and names the setting', (value) => {
    expect(() => loadApiConfig({ API_TRUSTED_PROXIES: value })).toThrow(
      /trustedProxies.*is not an IPv4 or IPv6 CIDR/,
    );
  });
});

describe('resolveClient()', () => {
  it('an untrusted peer is the client, whatever forwarding headers it sends', () => {
    expect(
      resolveClient(
        {
          peer: '203.0.113.9',
          encrypted: false,
          forwardedFor: '198.51.100.1',
          forwardedProto: 'https',
        },
        proxies,
      ),
    ).toEqual({ address: '203.0.113.9', secure: false });
  });

  it('behind trusted proxies the client is the rightmost untrusted hop; hops left of it are ignored', () => {
    expect(
      resolveClient(
        {
          peer: '10.1.2.3',
          encrypted: false,
          forwardedFor: '1.1.1.1, 198.51.100.7, 192.168.1.7',
          forwardedProto: 'https',
        },
        proxies,
      ),
    ).toEqual({ address: '198.51.100.7', secure: true });
  });

  it('reads IPv6 and IPv4-mapped peers, and a peer whose header is garbage stays the client', () => {
    expect(
      resolveClient({ peer: 'fd00::5', encrypted: false, forwardedFor: '2001:db8::1' }, proxies),
    ).toEqual({ address: '2001:db8::1', secure: false });
    expect(
      resolveClient(
        { peer: '::ffff:127.0.0.1', encrypted: false, forwardedFor: '198.51.100.2' },
        proxies,
      ),
    ).toEqual({ address: '198.51.100.2', secure: false });
    expect(
      resolveClient({ peer: '10.0.0.1', encrypted: false, forwardedFor: 'not-an-ip' }, proxies),
    ).toEqual({ address: '10.0.0.1', secure: false });
    expect(resolveClient({ peer: '::ffff:203.0.113.4', encrypted: true }, proxies)).toEqual({
      address: '203.0.113.4',
      secure: true,
    });
  });

  it('takes X-Forwarded-Proto from the nearest proxy, its last value', () => {
    expect(
      resolveClient({ peer: '127.0.0.1', encrypted: false, forwardedProto: 'https, http' }, proxies)
        .secure,
    ).toBe(false);
  });
});

describe('rate limits behind a proxy', () => {
  let api: TestApi | undefined;

  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  // Each call is a real HTTP request from 127.0.0.1 claiming to forward a client. It carries no
  // credentials: the rate limit runs first, so 401 means admitted and 429 refused.
  async function statusesFor(forwardedFor: string[]): Promise<number[]> {
    const statuses: number[] = [];
    for (const address of forwardedFor) {
      const response = await fetch(`${api!.baseUrl}/api/channels`, {
        headers: { 'x-forwarded-for': address },
      });
      statuses.push(response.status);
    }
    return statuses;
  }

  it('with 127.0.0.1/32 trusted, each forwarded client has its own bucket', async () => {
    api = await startTestApi({ api: { restRatePerSecond: '1', trustedProxies: '127.0.0.1/32' } });
    const clients = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4'];
    expect(await statusesFor(clients)).toEqual([401, 401, 401, 401]);
    // One client past its burst of two is refused; the others are not.
    expect(await statusesFor(['198.51.100.1', '198.51.100.1', '198.51.100.2'])).toEqual([
      401, 429, 401,
    ]);
  });

  it('without a trusted proxy, X-Forwarded-For is ignored and every request is 127.0.0.1', async () => {
    api = await startTestApi({ api: { restRatePerSecond: '1' } });
    expect(await statusesFor(['198.51.100.1', '198.51.100.2', '198.51.100.3'])).toEqual([
      401, 401, 429,
    ]);
  });
});
