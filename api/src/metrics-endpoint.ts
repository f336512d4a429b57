import http from 'node:http';
import type { Context } from 'koa';
import type { Registry } from 'prom-client';
import {
  AppError,
  listenHttp,
  notFound,
  secretMatches,
  serveOpsEndpoint,
} from '@hearth/server-common';

/** Who may read `/metrics` on the api's main port. */
export interface MetricsAccess {
  /** Deployment profile: the embedded one serves it to anyone who reaches the port. */
  readonly profile: 'embedded' | 'production';
  /** When set, callers must send `Authorization: Bearer <metricsToken>`, in every profile. */
  readonly metricsToken?: string | undefined;
}

/**
 * `GET /metrics` on the main port. With a metrics token, only callers presenting it (compared in
 * constant time) are served, and others get 401. Without one, the embedded profile serves anyone
 * (it listens on loopback by default) and production serves nobody there (404): scrape the
 * metrics listener (`API_METRICS_PORT`) or set `API_METRICS_TOKEN`.
 */
export async function serveMetrics(
  ctx: Context,
  registry: Registry,
  access: MetricsAccess,
): Promise<void> {
  if (access.metricsToken !== undefined) {
    const presented = /^Bearer (.+)$/.exec(ctx.get('authorization'))?.[1];
    if (!secretMatches(presented, access.metricsToken)) {
      throw new AppError('unauthorized', 'metrics need the metrics token');
    }
  } else if (access.profile === 'production') {
    throw new AppError('not_found', 'no such endpoint');
  }
  ctx.type = registry.contentType;
  ctx.body = await registry.metrics();
}

/** The api's own metrics listener, apart from the main port. */
export interface MetricsListener {
  /** The port it listens on. */
  readonly port: number;
  /** Stops it. */
  close(): Promise<void>;
}

/**
 * Serves `/metrics` and `/health` alone on their own address (`API_METRICS_HOST`, loopback by
 * default, and `API_METRICS_PORT`), for a Prometheus that reaches the api over a private network.
 */
export async function startMetricsListener(options: {
  registry: Registry;
  host: string;
  port: number;
}): Promise<MetricsListener> {
  const server = http.createServer((request, response) => {
    const ops = { registry: options.registry, health: () => ({}) };
    if (!serveOpsEndpoint(request, response, ops)) notFound(response);
  });
  const port = await listenHttp(server, options.host, options.port);
  return {
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
