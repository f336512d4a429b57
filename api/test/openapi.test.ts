import { describe, expect, it } from 'vitest';
import type { AppDeps } from '../src/app';
import { apiRouter } from '../src/app';
import { apiConfig } from '../src/config';
import { apiRoutes } from '../src/routes/index';
import { buildOpenApiDocument } from '../src/routes/openapi';
import { startTestApi } from './support/server';

// Mounting the table only reads the rate-limit settings; handlers never run here.
function registeredRoutes(): string[] {
  const router = apiRouter({ config: apiConfig() } as AppDeps);
  return router.stack.flatMap((layer) =>
    layer.methods
      .filter((method) => method !== 'HEAD')
      .map((method) => `${method.toLowerCase()} ${layer.path}`),
  );
}

describe('OpenAPI document', () => {
  it('the router and the document are made from one table: each route once, in both', () => {
    const registered = registeredRoutes().filter((route) => !route.includes('{*rest}'));
    const table = apiRoutes.map((route) => `${route.method} ${route.path}`);
    expect(new Set(table).size).toBe(table.length);
    expect([...registered].sort()).toEqual([...table].sort());
    const document = buildOpenApiDocument(apiRoutes) as { paths: Record<string, object> };
    const documented = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    expect(documented.sort()).toEqual([...table].sort());
  });

  it('buildOpenApiDocument() is OpenAPI 3.1 with request and response schemas from the protocol', () => {
    const document = buildOpenApiDocument(apiRoutes) as {
      openapi: string;
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<
        string,
        Record<
          string,
          { requestBody?: unknown; responses: Record<string, unknown>; security?: unknown }
        >
      >;
    };
    expect(document.openapi).toBe('3.1.0');
    const create = document.paths['/api/channels']!.post!;
    expect(create.requestBody).toMatchObject({
      content: {
        'application/json': {
          schema: { type: 'object', required: ['name'], additionalProperties: false },
        },
      },
    });
    expect(Object.keys(create.responses).sort()).toEqual([
      '201',
      '400',
      '401',
      '403',
      '409',
      '429',
    ]);
    expect(document.paths['/api/channels/{name}/stream-key']).toHaveProperty('post');
    expect(document.paths['/api/channels/{name}/stream-key']).toHaveProperty('delete');
    expect(document.paths['/api/health']!.get!.security).toBeUndefined();
    expect(document.paths['/api/auth/login']!.post!.security).toBeUndefined();
    // Guests hold bearer tokens from POST /api/auth/guest: there is no other scheme.
    expect(document.paths['/api/streams']!.get!.security).toEqual([{ bearer: [] }]);
    expect(document.paths['/api/admin/users']!.get!.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(document.components.securitySchemes)).toEqual(['bearer']);
    const guest = document.paths['/api/auth/guest']!.post!;
    expect(guest.security).toBeUndefined();
    expect(guest.requestBody).toMatchObject({
      content: { 'application/json': { schema: { required: ['displayName'] } } },
    });
    expect(guest.responses['201']).toMatchObject({
      content: {
        'application/json': {
          schema: { required: expect.arrayContaining(['accessToken', 'expiresIn', 'user']) },
        },
      },
    });
    expect(Object.keys(guest.responses).sort()).toEqual(['201', '400', '403', '429']);
    expect(document.paths['/api/admin/users/{username}/role']).toHaveProperty('put');
    const kick = document.paths['/api/channels/{name}/participants/{peerId}/kick']!.post!;
    expect(Object.keys(kick.responses)).toContain('204');
    const ban = document.paths['/api/channels/{name}/participants/{peerId}/ban']!.post!;
    expect(ban.requestBody).toMatchObject({
      content: { 'application/json': { schema: { properties: { serverWide: {} } } } },
    });
    expect(document.paths['/api/bans']!.get!.responses).toHaveProperty('200');
    const listParameters = (
      document.paths['/api/channels']!.get as unknown as {
        parameters: { name: string; in: string }[];
      }
    ).parameters;
    expect(listParameters.map((p) => `${p.in} ${p.name}`)).toEqual(['query limit', 'query offset']);
    expect(Object.keys(document.paths['/api/bans/{scope}/{userId}']!.delete!.responses)).toEqual(
      expect.arrayContaining(['204', '403', '404']),
    );
    expect(Object.keys(document.paths['/api/auth/me']!.get!.responses).sort()).toEqual([
      '200',
      '401',
      '429',
    ]);
  });

  it('GET /api/docs serves the document', async () => {
    const api = await startTestApi();
    try {
      const response = await fetch(`${api.baseUrl}/api/docs`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual(
        JSON.parse(JSON.stringify(buildOpenApiDocument(apiRoutes))),
      );
    } finally {
      await api.close();
    }
  });
});
