import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../src/config';
import { contentSecurityPolicy } from '../src/security-headers';
import { startTestApi, type TestApi } from './support/server';

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

/** A CSP split into its directives, each a list of sources. */
function directives(policy: string): Record<string, string[]> {
  return Object.fromEntries(
    policy.split('; ').map((directive) => {
      const [name, ...sources] = directive.split(' ');
      return [name!, sources];
    }),
  );
}

describe('contentSecurityPolicy()', () => {
  it('allows this origin, the playback origin for fetches and media, blob: media and workers, and no inline script', () => {
    expect(
      directives(
        contentSecurityPolicy({
          playbackBaseUrl: 'https://cdn.example.com/hls/',
          connectOrigins: ['https://voice-1.example.com', 'http://10.0.0.5:4443'],
        }),
      ),
    ).toEqual({
      'default-src': ["'self'"],
      'script-src': ["'self'"],
      'style-src': ["'self'"],
      'img-src': ["'self'", 'data:', 'blob:'],
      'font-src': ["'self'"],
      'connect-src': [
        "'self'",
        'https://cdn.example.com',
        'https://voice-1.example.com',
        'wss://voice-1.example.com',
        'http://10.0.0.5:4443',
        'ws://10.0.0.5:4443',
      ],
      'media-src': ["'self'", 'blob:', 'https://cdn.example.com'],
      'worker-src': ["'self'", 'blob:'],
      'object-src': ["'none'"],
      'base-uri': ["'self'"],
      'form-action': ["'self'"],
      'frame-ancestors': ["'none'"],
    });
  });

  it('loadApiConfig() keeps the origin of each API_ALLOWED_ORIGINS URL and refuses what is not a URL', () => {
    expect(
      loadApiConfig({
        API_ALLOWED_ORIGINS: 'https://voice-1.example.com/, http://10.0.0.5:4443/ws',
      }).allowedOrigins,
    ).toEqual(['https://voice-1.example.com', 'http://10.0.0.5:4443']);
    expect(() => loadApiConfig({ API_ALLOWED_ORIGINS: 'voice-1.example.com' })).toThrow(
      /allowedOrigins.*must be origins/,
    );
  });
});

describe('security headers over HTTP', () => {
  it('the web app and the API answer with the CSP, no framing, nosniff and no-referrer, and no HSTS over plain HTTP', async () => {
    api = await startTestApi({
      streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: 'http://127.0.0.1:18081' },
    });
    fs.writeFileSync(path.join(api.webDistDir, 'index.html'), '<!doctype html><title>h</title>');
    for (const response of [
      await fetch(`${api.baseUrl}/watch/lobby`, { headers: { accept: 'text/html' } }),
      await fetch(`${api.baseUrl}/api/health`),
      await fetch(`${api.baseUrl}/api/no-such-thing`),
    ]) {
      const policy = directives(response.headers.get('content-security-policy') ?? '');
      expect(policy['frame-ancestors']).toEqual(["'none'"]);
      expect(policy['script-src']).toEqual(["'self'"]);
      expect(policy['media-src']).toContain('http://127.0.0.1:18081');
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      expect(response.headers.get('referrer-policy')).toBe('no-referrer');
      expect(response.headers.get('strict-transport-security')).toBeNull();
    }
  });

  it('HSTS is sent when a trusted proxy says the request came over TLS, and not for anyone else saying so', async () => {
    api = await startTestApi({ api: { trustedProxies: '127.0.0.1/32' } });
    const viaProxy = await fetch(`${api.baseUrl}/api/health`, {
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.3' },
    });
    expect(viaProxy.headers.get('strict-transport-security')).toBe('max-age=31536000');
    const plain = await fetch(`${api.baseUrl}/api/health`);
    expect(plain.headers.get('strict-transport-security')).toBeNull();
    await api.close();

    api = await startTestApi();
    const spoofed = await fetch(`${api.baseUrl}/api/health`, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(spoofed.headers.get('strict-transport-security')).toBeNull();
  });
});
