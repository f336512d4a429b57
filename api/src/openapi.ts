import { z } from 'zod';
import {
  channelListSchema,
  channelSchema,
  channelStreamSchema,
  createChannelBodySchema,
  errorBodySchema,
  healthSchema,
  issuedStreamKeySchema,
  liveStreamListSchema,
  streamKeyDetailsSchema,
  streamKeyListSchema,
  voiceCapabilitiesSchema,
  type Grant,
} from '@hearth/protocol';

/** One documented REST operation. */
export interface ApiOperation {
  /** HTTP method. */
  readonly method: 'get' | 'post' | 'delete';
  /** Path in Koa form, e.g. `/api/channels/:name`. */
  readonly path: string;
  /** One line saying what it does. */
  readonly summary: string;
  /** Whether the caller must authenticate, and the grant it needs. */
  readonly auth?: { readonly grant?: Grant };
  /** JSON request body. */
  readonly body?: z.ZodType;
  /** Success status and its JSON body (none for 204). */
  readonly success: { readonly status: number; readonly schema?: z.ZodType; readonly text?: true };
}

const channelName = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };

/** Every REST operation of the api, with the schemas it reads and answers. */
export const apiOperations: readonly ApiOperation[] = [
  {
    method: 'get',
    path: '/api/health',
    summary: 'Liveness',
    success: { status: 200, schema: healthSchema },
  },
  {
    method: 'get',
    path: '/api/ready',
    summary: 'Readiness: workers up and web app built (503 otherwise)',
    success: { status: 200, schema: healthSchema },
  },
  {
    method: 'get',
    path: '/api/voice/capabilities',
    summary: 'RTP capabilities a voice client loads before joining',
    success: { status: 200, schema: voiceCapabilitiesSchema },
  },
  {
    method: 'get',
    path: '/api/channels',
    summary: 'Channels with their live participants',
    success: { status: 200, schema: channelListSchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name',
    summary: 'One channel',
    success: { status: 200, schema: channelSchema },
  },
  {
    method: 'post',
    path: '/api/channels',
    summary: 'Creates a channel',
    auth: { grant: 'moderate' },
    body: createChannelBodySchema,
    success: { status: 201, schema: channelSchema },
  },
  {
    method: 'delete',
    path: '/api/channels/:name',
    summary: 'Deletes a channel and closes it live',
    auth: { grant: 'moderate' },
    success: { status: 204 },
  },
  {
    method: 'post',
    path: '/api/channels/:name/stream-key',
    summary: "Issues the channel's stream key; the secret is shown only in this answer",
    auth: { grant: 'stream' },
    success: { status: 201, schema: issuedStreamKeySchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name/stream-key',
    summary: "The channel's stream key without its secret, and the OBS server URL",
    auth: { grant: 'stream' },
    success: { status: 200, schema: streamKeyDetailsSchema },
  },
  {
    method: 'post',
    path: '/api/channels/:name/stream-key/rotate',
    summary: 'Replaces the stream key; a live stream on the old key ends',
    auth: { grant: 'stream' },
    success: { status: 200, schema: issuedStreamKeySchema },
  },
  {
    method: 'delete',
    path: '/api/channels/:name/stream-key',
    summary: 'Revokes the stream key; a live stream on it ends',
    auth: { grant: 'stream' },
    success: { status: 204 },
  },
  {
    method: 'get',
    path: '/api/stream-keys',
    summary: 'Every stream key, without secrets',
    auth: { grant: 'moderate' },
    success: { status: 200, schema: streamKeyListSchema },
  },
  {
    method: 'get',
    path: '/api/streams',
    summary: 'Live streams with state, renditions, playback URL and viewers',
    success: { status: 200, schema: liveStreamListSchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name/stream',
    summary: "The channel's current stream, or null when offline",
    success: { status: 200, schema: channelStreamSchema },
  },
  {
    method: 'get',
    path: '/api/docs',
    summary: 'This OpenAPI document',
    success: { status: 200 },
  },
  {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics',
    success: { status: 200, text: true },
  },
];

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const converted: Record<string, unknown> = z.toJSONSchema(schema, {
    io: 'output',
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
export function buildOpenApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of apiOperations) {
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
      '429': errorResponse('Too many requests'),
    };
    if (operation.body || path.includes('{name}'))
      responses['400'] = errorResponse('Invalid input');
    if (operation.auth) {
      responses['401'] = errorResponse('Missing or invalid credentials');
      responses['403'] = errorResponse(`Missing the "${operation.auth.grant}" grant`);
    }
    paths[path] ??= {};
    paths[path]![operation.method] = {
      summary: operation.summary,
      ...(path.includes('{name}') ? { parameters: [channelName] } : {}),
      ...(operation.auth ? { security: [{ guest: [] }, { operatorToken: [] }] } : {}),
      ...(operation.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(operation.body) } },
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
        guest: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description: '`Guest <url-encoded display name>`, while guest access is enabled',
        },
        operatorToken: { type: 'http', scheme: 'bearer', description: 'The operator token' },
      },
    },
  };
}
