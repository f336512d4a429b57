import fs from 'node:fs';
import path from 'node:path';
import { healthSchema } from '@hearth/protocol';
import { serveMetrics } from '../metrics-endpoint';
import { adminRoutes } from './admin';
import { authRoutes } from './auth';
import { channelRoutes } from './channels';
import { moderationRoutes } from './moderation';
import { nodeRoutes } from './nodes';
import { buildOpenApiDocument } from './openapi';
import { route, type Route } from './route';
import { streamRoutes } from './streams';
import { voiceRoutes } from './voice';

const healthRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/health',
    summary: 'Liveness',
    limit: 'none',
    success: { status: 200, schema: healthSchema },
    handle: () => ({ status: 'ok' as const, checks: { process: true } }),
  }),
  route({
    method: 'get',
    path: '/api/ready',
    summary: 'Readiness: a voice node up and the web app built (503 otherwise)',
    limit: 'none',
    errors: { 503: 'Not ready: the checks say which part is missing' },
    success: { status: 200, schema: healthSchema },
    async handle({ ctx, deps }) {
      const nodes = await deps.placement.nodes();
      const checks = {
        voiceNodes: nodes.some((node) => node.kind === 'voice' && node.status === 'up'),
        webApp: fs.existsSync(path.join(deps.config.webDistDir, 'index.html')),
      };
      const ready = Object.values(checks).every(Boolean);
      if (!ready) ctx.status = 503;
      return { status: ready ? ('ok' as const) : ('unavailable' as const), checks };
    },
  }),
];

let openApiDocument: Record<string, unknown> | undefined;

const documentationRoutes: readonly Route[] = [
  route({
    method: 'get',
    path: '/api/docs',
    summary: 'This OpenAPI document',
    limit: 'none',
    success: { status: 200 },
    handle({ ctx }) {
      openApiDocument ??= buildOpenApiDocument(apiRoutes);
      ctx.body = openApiDocument;
    },
  }),
  route({
    method: 'get',
    path: '/metrics',
    summary:
      'Prometheus metrics, with no channel names. With API_METRICS_TOKEN set it needs `Authorization: Bearer <token>`; without it, the embedded profile serves anyone and production nobody (scrape API_METRICS_PORT)',
    limit: 'none',
    errors: { 401: 'Missing or wrong metrics token', 404: 'Not served on this port' },
    success: { status: 200, text: true },
    handle: ({ ctx, deps }) => serveMetrics(ctx, deps.registry, deps.config),
  }),
];

/**
 * Every REST route of the api, in one table: the router (`mountRoutes`) and the OpenAPI document
 * (`buildOpenApiDocument`) are both made from it.
 */
export const apiRoutes: readonly Route[] = [
  ...healthRoutes,
  ...voiceRoutes,
  ...authRoutes,
  ...channelRoutes,
  ...streamRoutes,
  ...adminRoutes,
  ...moderationRoutes,
  ...nodeRoutes,
  ...documentationRoutes,
];
