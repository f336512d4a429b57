import type { Middleware } from 'koa';
import { Counter, type Registry } from 'prom-client';

// Methods get their own label value; anything else a client invents shares `other`, so the
// label stays bounded whatever arrives.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const STATUS_CLASSES = ['2xx', '3xx', '4xx', '5xx'] as const;

/**
 * Counts every answered HTTP request in `api_http_requests_total{method,status_class}`, which the
 * HighErrorRate alert divides. Mounted first, it also counts errors that escape every other
 * middleware, as Koa answers them.
 */
export function httpMetrics(registry: Registry): Middleware {
  const requests = new Counter({
    name: 'api_http_requests_total',
    help: 'HTTP requests the api answered, by method and status class (2xx, 4xx, 5xx...)',
    labelNames: ['method', 'status_class'],
    registers: [registry],
  });
  // Series that exist from the start let rate() see the first 5xx; a series born with its first
  // increment hides that increment from rate() and increase().
  for (const method of [...METHODS, 'other']) {
    for (const statusClass of STATUS_CLASSES)
      requests.inc({ method, status_class: statusClass }, 0);
  }
  const count = (method: string, status: number) =>
    requests.inc({ method: methodLabel(method), status_class: statusClass(status) });
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      count(ctx.method, statusOfError(error));
      throw error;
    }
    count(ctx.method, ctx.status);
  };
}

function methodLabel(method: string): string {
  return (METHODS as readonly string[]).includes(method) ? method : 'other';
}

function statusClass(status: number): string {
  return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}

// Koa answers an escaped error with its `status` when it carries a valid one, else with 500.
function statusOfError(error: unknown): number {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500;
}
