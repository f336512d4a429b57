import { z } from 'zod';
import { errorBodySchema } from '@hearth/protocol';
import type { Route } from './route';

// What each path parameter is; every `:param` of a route must be described here.
const pathParameters: Record<string, string> = {
  name: 'Channel name',
  username: 'Account username (any case)',
  channel: 'Channel name, or * for every channel',
  peerId: "A participant's peer id in the channel, as its roster lists it",
  scope: 'Channel name of a ban, or * for a server-wide ban',
  userId: 'Account id, or guest session id (guest:<uuid>), of the banned user',
};

// Request bodies are described as clients send them (fields with defaults are optional), answers
// as the api sends them.
function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Record<string, unknown> {
  const converted: Record<string, unknown> = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
  });
  // OpenAPI 3.1 schemas are JSON Schema 2020-12, which zod emits; the dialect is set once for the
  // whole document instead of on every schema.
  delete converted.$schema;
  return converted;
}

function errorResponse(description: string) {
  return {
    description,
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  };
}

/** Builds the OpenAPI 3.1 document of the REST API from the zod schemas in `@hearth/protocol`. */
export function buildOpenApiDocument(routes: readonly Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of routes) {
    const path = operation.path.replace(/:(\w+)/g, '{$1}');
    const responses: Record<string, unknown> = {
      [operation.success.status]: {
        description: operation.summary,
        ...(operation.success.schema
          ? { content: { 'application/json': { schema: jsonSchema(operation.success.schema) } } }
          : operation.success.text
            ? { content: { 'text/plain': { schema: { type: 'string' } } } }
            : {}),
      },
    };
    if (operation.limit !== 'none') responses['429'] = errorResponse('Too many requests');
    const pathParams = [...operation.path.matchAll(/:(\w+)/g)].map(([, name]) => {
      const description = pathParameters[name!];
      if (!description)
        throw new Error(`undocumented path parameter :${name} in ${operation.path}`);
      return { name, in: 'path', required: true, description, schema: { type: 'string' } };
    });
    const queryParameters = Object.entries(operation.query?.shape ?? {}).map(([name, schema]) => ({
      name,
      in: 'query',
      required: false,
      schema: jsonSchema(schema as z.ZodType, 'input'),
    }));
    const parameters: Record<string, unknown>[] = [...pathParams, ...queryParameters];
    if (operation.body || parameters.length > 0) responses['400'] = errorResponse('Invalid input');
    if (operation.auth) responses['401'] = errorResponse('Missing or invalid credentials');
    if (operation.auth?.grant) {
      const where =
        path.includes('{name}') && !operation.auth.serverWide ? 'in the channel' : 'server-wide';
      const guests = operation.auth.accountsOnly ? ', or a guest session' : '';
      responses['403'] = errorResponse(
        `Missing the "${operation.auth.grant}" grant ${where}${guests}`,
      );
    }
    for (const [status, description] of Object.entries(operation.errors ?? {})) {
      responses[status] = errorResponse(description);
    }
    paths[path] ??= {};
    paths[path]![operation.method] = {
      summary: operation.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(operation.auth ? { security: [{ bearer: [] }] } : {}),
      ...(operation.body
        ? {
            requestBody: {
              required: !operation.bodyOptional,
              content: { 'application/json': { schema: jsonSchema(operation.body, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Hearth API',
      version: '0.1.0',
      description:
        'Control plane of the Hearth voice and live-streaming platform. Errors are JSON: {"error":{"code","message"}}.',
    },
    paths,
    components: {
      schemas: { Error: jsonSchema(errorBodySchema) },
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An access token from /api/auth/login, /register or /refresh (a JWT), a guest session token from /api/auth/guest, or the operator token',
        },
      },
    },
  };
}
