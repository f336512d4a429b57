import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../src/config';
import { startMetricsListener, type MetricsListener } from '../src/metrics-endpoint';
import { startTestApi, type TestApi } from './support/server';

const METRICS_TOKEN = 'metrics-token-that-is-long-enough-0123456789';

let api: TestApi | undefined;
let listener: MetricsListener | undefined;

afterEach(async () => {
  await api?.close();
  await listener?.close();
  api = undefined;
  listener = undefined;
});

const scrape = (headers: Record<string, string> = {}) =>
  fetch(`${api!.baseUrl}/metrics`, { headers });

describe('GET /metrics on the main port', () => {
  it('the embedded profile serves anyone, and names no channel although one is open', async () => {
    api = await startTestApi();
    await api.voice!.channels.open('secret-room-42');
    const response = await scrape();
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain('voice_channels_active 1');
    expect(text).not.toContain('secret-room-42');
    expect(text).not.toMatch(/\{[^}]*channel=/);
  });

  it('the production profile serves nobody there without a metrics token (404)', async () => {
    api = await startTestApi({ api: { profile: 'production' } });
    const response = await scrape();
    expect(response.status).toBe(404);
    expect(await response.text()).not.toContain('# HELP');
  });

  it('with API_METRICS_TOKEN it wants that bearer token (401 without it or with another), in any profile', async () => {
    api = await startTestApi({ api: { metricsToken: METRICS_TOKEN } });
    expect((await scrape()).status).toBe(401);
    expect((await scrape({ authorization: `Bearer ${METRICS_TOKEN}x` })).status).toBe(401);
    expect((await scrape({ authorization: METRICS_TOKEN })).status).toBe(401);
    const served = await scrape({ authorization: `Bearer ${METRICS_TOKEN}` });
    expect(served.status).toBe(200);
    expect(await served.text()).toContain('voice_channels_active 0');
  });

  it('loadApiConfig() reads the metrics settings and refuses a short token', () => {
    expect(
      loadApiConfig({ API_METRICS_TOKEN: METRICS_TOKEN, API_METRICS_PORT: '9464' }),
    ).toMatchObject({ metricsToken: METRICS_TOKEN, metricsPort: 9464, metricsHost: '127.0.0.1' });
    expect(() => loadApiConfig({ API_METRICS_TOKEN: 'short' })).toThrow(/metricsToken/);
  });
});

describe('startMetricsListener()', () => {
  it('serves /metrics and /health on its own port, and nothing else', async () => {
    const registry = new Registry();
    new Counter({ name: 'test_things_total', help: 'things', registers: [registry] }).inc(3);
    listener = await startMetricsListener({ registry, host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${listener.port}`;
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('test_things_total 3');
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${base}/api/channels`)).status).toBe(404);
  });
});
