import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { httpMetrics } from '../src/http-metrics';
import { startTestApi, type TestApi } from './support/server';

let server: http.Server | undefined;
let api: TestApi | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  await api?.close();
  server = undefined;
  api = undefined;
});

// The counter's samples as `method status_class` -> value.
async function counts(registry: Registry): Promise<Map<string, number>> {
  const metric = registry.getSingleMetric('api_http_requests_total');
  if (!metric) throw new Error('api_http_requests_total is not registered');
  const { values } = await metric.get();
  return new Map(values.map((v) => [`${v.labels.method} ${v.labels.status_class}`, v.value]));
}

// A Koa app with the middleware first and routes that answer 200, 404, 503 or throw.
async function startApp(registry: Registry): Promise<string> {
  const app = new Koa();
  app.silent = true;
  app.use(httpMetrics(registry));
  app.use((ctx) => {
    if (ctx.path === '/ok') ctx.body = 'ok';
    else if (ctx.path === '/unavailable') ctx.status = 503;
    else if (ctx.path === '/throws') throw new Error('boom');
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server!.once('listening', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('httpMetrics()', () => {
  it('counts each answered request by method and status class, errors escaping to Koa as 5xx', async () => {
    const registry = new Registry();
    const base = await startApp(registry);
    expect((await fetch(`${base}/ok`)).status).toBe(200);
    expect((await fetch(`${base}/ok`, { method: 'POST' })).status).toBe(200);
    expect((await fetch(`${base}/missing`)).status).toBe(404);
    expect((await fetch(`${base}/unavailable`, { method: 'DELETE' })).status).toBe(503);
    expect((await fetch(`${base}/throws`, { method: 'PUT' })).status).toBe(500);
    const seen = await counts(registry);
    expect(seen.get('GET 2xx')).toBe(1);
    expect(seen.get('POST 2xx')).toBe(1);
    expect(seen.get('GET 4xx')).toBe(1);
    expect(seen.get('DELETE 5xx')).toBe(1);
    expect(seen.get('PUT 5xx')).toBe(1);
    expect([...seen.values()].reduce((sum, value) => sum + value, 0)).toBe(5);
  });

  it('starts every method and status class at 0, and folds unknown methods into "other"', async () => {
    const registry = new Registry();
    const base = await startApp(registry);
    const before = await counts(registry);
    expect(before.size).toBe(32);
    expect([...before.values()].every((value) => value === 0)).toBe(true);
    // An invented method is still one bounded label value.
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.request(`${base}/ok`, { method: 'PURGE' }, (response) => {
        response.resume();
        resolve(response.statusCode!);
      });
      request.once('error', reject);
      request.end();
    });
    expect(status).toBe(200);
    const after = await counts(registry);
    expect(after.get('other 2xx')).toBe(1);
    expect(after.size).toBe(32);
  });
});

describe('the api app', () => {
  it('serves api_http_requests_total at /metrics, counting its own answers', async () => {
    api = await startTestApi();
    expect((await fetch(`${api.baseUrl}/api/nodes`)).status).toBe(401);
    const text = await (await fetch(`${api.baseUrl}/metrics`)).text();
    expect(text).toMatch(/^api_http_requests_total\{method="GET",status_class="4xx"\} 1$/m);
    expect(text).toMatch(/^api_http_requests_total\{method="POST",status_class="5xx"\} 0$/m);
  });
});
