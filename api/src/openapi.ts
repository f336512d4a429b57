import { z } from 'zod';
import {
  adminUserListSchema,
  adminUserSchema,
  banBodySchema,
  banListSchema,
  channelListSchema,
  channelSchema,
  channelStreamSchema,
  createChannelBodySchema,
  createUserBodySchema,
  errorBodySchema,
  guestSessionBodySchema,
  guestSessionSchema,
  healthSchema,
  issuedStreamKeySchema,
  liveStreamListSchema,
  loginBodySchema,
  meSchema,
  refreshBodySchema,
  registerBodySchema,
  setGrantsBodySchema,
  setRoleBodySchema,
  streamKeyDetailsSchema,
  streamKeyListSchema,
  tokenResponseSchema,
  updateChannelBodySchema,
  userGrantsSchema,
  voiceCapabilitiesSchema,
  voiceJoinBodySchema,
  voiceJoinSchema,
  type Grant,
} from '@hearth/protocol';
import { nodeOperations } from './routes/nodes';

/** One documented REST operation. */
export interface ApiOperation {
  /** HTTP method. */
  readonly method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Path in Koa form, e.g. `/api/channels/:name`. */
  readonly path: string;
  /** One line saying what it does. */
  readonly summary: string;
  /**
   * Whether the caller must authenticate, and the grant it needs: in the `:name` channel when the
   * path has one, server-wide otherwise. `accountsOnly` refuses guest sessions.
   */
  readonly auth?: { readonly grant?: Grant; readonly accountsOnly?: true };
  /** JSON request body. */
  readonly body?: z.ZodType;
  /** The body may be left out (the refresh token then comes from its cookie). */
  readonly bodyOptional?: true;
  /** Error statuses particular to this operation, with what they mean. */
  readonly errors?: Readonly<Record<number, string>>;
  /** Success status and its JSON body (none for 204). */
  readonly success: { readonly status: number; readonly schema?: z.ZodType; readonly text?: true };
}

// What each path parameter is; every `:param` of a documented path must be described here.
const pathParameters: Record<string, string> = {
  name: 'Channel name',
  username: 'Account username (any case)',
  channel: 'Channel name, or * for every channel',
  peerId: "A participant's peer id in the channel, as its roster lists it",
  scope: 'Channel name of a ban, or * for a server-wide ban',
  userId: 'Account id, or guest session id (guest:<uuid>), of the banned user',
};

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
    method: 'post',
    path: '/api/voice/join',
    summary:
      'Places the caller in a channel on a voice node and returns its signaling URL with a join token (needs join in the channel)',
    auth: { grant: 'join' },
    body: voiceJoinBodySchema,
    errors: { 404: 'No such channel', 429: 'Too many joins', 503: 'No voice node has room' },
    success: { status: 200, schema: voiceJoinSchema },
  },
  {
    method: 'post',
    path: '/api/auth/register',
    summary:
      'Creates an account and signs it in (while registration is on); the refresh token comes in the body and in the hearth_refresh cookie (HttpOnly, SameSite=Strict, Path=/api/auth, Secure over TLS)',
    body: registerBodySchema,
    errors: { 403: 'Registration is disabled', 409: 'The username is taken' },
    success: { status: 201, schema: tokenResponseSchema },
  },
  {
    method: 'post',
    path: '/api/auth/guest',
    summary:
      'Starts a guest session under a display name (normalized: NFC, invisible and bidi characters removed) while guest access is on; send its access token as `Authorization: Bearer`. Guests hold the configured guest grants (join and speak by default), never moderate or stream',
    body: guestSessionBodySchema,
    errors: { 403: 'Guest access is disabled' },
    success: { status: 201, schema: guestSessionSchema },
  },
  {
    method: 'post',
    path: '/api/auth/login',
    summary:
      'Signs in with username and password; the refresh token comes in the body, for clients such as the CLI, and in the hearth_refresh cookie for browsers',
    body: loginBodySchema,
    errors: {
      401: 'Wrong username or password, or a disabled account',
      429: 'Too many requests, or too many failed logins for this username',
    },
    success: { status: 200, schema: tokenResponseSchema },
  },
  {
    method: 'post',
    path: '/api/auth/refresh',
    summary:
      'Trades a refresh token (single use) for a new access and refresh token. The token comes from the body, else from the hearth_refresh cookie; a refresh by cookie answers the new refresh token in the cookie only',
    body: refreshBodySchema,
    bodyOptional: true,
    errors: { 401: 'Unknown, expired, revoked or already used refresh token' },
    success: { status: 200, schema: tokenResponseSchema.partial({ refreshToken: true }) },
  },
  {
    method: 'post',
    path: '/api/auth/logout',
    summary:
      'Revokes the refresh token (from the body, else the cookie) and every token of its login, and clears the cookie',
    body: refreshBodySchema,
    bodyOptional: true,
    success: { status: 204 },
  },
  {
    method: 'get',
    path: '/api/auth/me',
    summary: 'Who the caller is, its role and the grants it holds',
    auth: {},
    success: { status: 200, schema: meSchema },
  },
  {
    method: 'get',
    path: '/api/channels',
    summary: 'Channels with their live participants',
    auth: { grant: 'join' },
    success: { status: 200, schema: channelListSchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name',
    summary: 'One channel',
    auth: { grant: 'join' },
    success: { status: 200, schema: channelSchema },
  },
  {
    method: 'patch',
    path: '/api/channels/:name',
    summary: 'Makes a channel private (members only) or public again; a live stream restarts',
    auth: { grant: 'moderate' },
    body: updateChannelBodySchema,
    errors: { 404: 'No such channel' },
    success: { status: 200, schema: channelSchema },
  },
  {
    method: 'post',
    path: '/api/channels',
    summary: 'Creates a channel, public unless `private` is true',
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
    auth: { grant: 'join' },
    success: { status: 200, schema: liveStreamListSchema },
  },
  {
    method: 'get',
    path: '/api/channels/:name/stream',
    summary: "The channel's current stream, or null when offline",
    auth: { grant: 'join' },
    success: { status: 200, schema: channelStreamSchema },
  },
  {
    method: 'get',
    path: '/api/admin/users',
    summary: 'Every account',
    auth: { grant: 'moderate', accountsOnly: true },
    success: { status: 200, schema: adminUserListSchema },
  },
  {
    method: 'post',
    path: '/api/admin/users',
    summary:
      'Creates an account; `admin` makes it an admin, with every grant in every channel (only the owner or the operator token may)',
    auth: { grant: 'moderate', accountsOnly: true },
    body: createUserBodySchema,
    success: { status: 201, schema: adminUserSchema },
  },
  {
    method: 'post',
    path: '/api/admin/users/:username/disable',
    summary: 'Disables an account and revokes its refresh tokens',
    auth: { grant: 'moderate', accountsOnly: true },
    success: { status: 200, schema: adminUserSchema },
  },
  {
    method: 'put',
    path: '/api/admin/users/:username/role',
    summary:
      "Sets an account's role (owner, admin or member); only below the caller's own rank, on an account ranked below the caller. Naming a new owner makes the current one an admin",
    auth: { grant: 'moderate', accountsOnly: true },
    body: setRoleBodySchema,
    errors: { 404: 'No such account' },
    success: { status: 200, schema: adminUserSchema },
  },
  {
    method: 'get',
    path: '/api/admin/users/:username/grants',
    summary: "An account's memberships: its grants per channel and server-wide (*)",
    auth: { grant: 'moderate', accountsOnly: true },
    success: { status: 200, schema: userGrantsSchema },
  },
  {
    method: 'put',
    path: '/api/admin/users/:username/grants/:channel',
    summary:
      "Sets an account's grants in a channel or server-wide (*); only grants the caller holds",
    auth: { grant: 'moderate', accountsOnly: true },
    body: setGrantsBodySchema,
    success: { status: 200, schema: userGrantsSchema },
  },
  {
    method: 'delete',
    path: '/api/admin/users/:username/grants/:channel',
    summary: "Removes an account's grants in a channel or server-wide (*)",
    auth: { grant: 'moderate', accountsOnly: true },
    success: { status: 204 },
  },
  {
    method: 'post',
    path: '/api/channels/:name/participants/:peerId/kick',
    summary:
      "Disconnects a participant's user from the channel on every node; only someone ranked below the caller",
    auth: { grant: 'moderate' },
    errors: { 404: 'No such participant in the channel' },
    success: { status: 204 },
  },
  {
    method: 'post',
    path: '/api/channels/:name/participants/:peerId/ban',
    summary:
      "Bans a participant's user from the channel, or from every channel with `serverWide` (needs moderate server-wide), and disconnects it; only someone ranked below the caller",
    auth: { grant: 'moderate' },
    body: banBodySchema,
    errors: { 404: 'No such participant in the channel' },
    success: { status: 204 },
  },
  {
    method: 'get',
    path: '/api/bans',
    summary: 'Bans, newest first, a page at a time (`limit`, `offset`)',
    auth: { grant: 'moderate' },
    success: { status: 200, schema: banListSchema },
  },
  {
    method: 'delete',
    path: '/api/bans/:scope/:userId',
    summary: 'Lifts a ban (needs moderate in its channel, or server-wide for *)',
    auth: { grant: 'moderate' },
    errors: {
      403: 'Missing the "moderate" grant in the ban\'s channel, or server-wide for *',
      404: 'No such ban',
    },
    success: { status: 204 },
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
    summary:
      'Prometheus metrics, with no channel names. With API_METRICS_TOKEN set it needs `Authorization: Bearer <token>`; without it, the embedded profile serves anyone and production nobody (scrape API_METRICS_PORT)',
    errors: { 401: 'Missing or wrong metrics token', 404: 'Not served on this port' },
    success: { status: 200, text: true },
  },
  ...nodeOperations,
];

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
    const parameters = [...operation.path.matchAll(/:(\w+)/g)].map(([, name]) => {
      const description = pathParameters[name!];
      if (!description)
        throw new Error(`undocumented path parameter :${name} in ${operation.path}`);
      return { name, in: 'path', required: true, description, schema: { type: 'string' } };
    });
    if (operation.body || parameters.length > 0) responses['400'] = errorResponse('Invalid input');
    if (operation.auth) responses['401'] = errorResponse('Missing or invalid credentials');
    if (operation.auth?.grant) {
      const where = path.includes('{name}') ? 'in the channel' : 'server-wide';
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
