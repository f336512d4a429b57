import { describe, expect, it } from 'vitest';
import type { AppDeps } from '../src/app';
import { apiRouter } from '../src/app';
import { apiConfig } from '../src/config';
import { apiOperations, buildOpenApiDocument } from '../src/openapi';
import { startTestApi } from './support/server';

// Registering routes only reads the rate-limit setting; handlers never run here.
function registeredRoutes(): string[] {
  const router = apiRouter({ config: apiConfig() } as AppDeps);
  return router.stack.flatMap((layer) =>
    layer.methods
      .filter((method) => method !== 'HEAD')
      .map((method) => `${method.toLowerCase()} ${layer.path}`),
  );
}

describe('OpenAPI document', () => {
  it('documents exactly the routes the api registers', () => {
    const registered = registeredRoutes().filter((route) => !route.includes('{*rest}'));
    const documented = apiOperations.map((operation) => `${operation.method} ${operation.path}`);
    expect([...registered].sort()).toEqual([...documented].sort());
  });

  it('buildOpenApiDocument() is OpenAPI 3.1 with request and response schemas from the protocol', () => {
    const document = buildOpenApiDocument() as {
      openapi: string;
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
    expect(Object.keys(create.responses).sort()).toEqual(['201', '400', '401', '403', '429']);
    expect(document.paths['/api/channels/{name}/stream-key']).toHaveProperty('post');
    expect(document.paths['/api/channels/{name}/stream-key']).toHaveProperty('delete');
    expect(document.paths['/api/health']!.get!.security).toBeUndefined();
    expect(document.paths['/api/auth/login']!.post!.security).toBeUndefined();
    expect(document.paths['/api/streams']!.get!.security).toEqual([{ bearer: [] }, { guest: [] }]);
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
      expect(await response.json()).toEqual(JSON.parse(JSON.stringify(buildOpenApiDocument())));
    } finally {
      await api.close();
    }
  });
});
