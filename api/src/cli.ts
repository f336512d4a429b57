// The admin CLI: `npm run cli -- <command>`. It talks to the running api over HTTP with the
// operator token, so what it changes is what the running platform uses.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  accountRoleSchema,
  adminUserListSchema,
  adminUserSchema,
  channelListSchema,
  channelNameSchema,
  channelSchema,
  describeZodError,
  errorBodySchema,
  grantScopeSchema,
  grantSchema,
  channelSfuStatusSchema,
  issuedStreamKeySchema,
  nodeListSchema,
  passwordSchema,
  SHARE_PRESET_IDS,
  sharePresetIdSchema,
  shareRoutingSchema,
  streamKeyListSchema,
  userGrantsSchema,
  type CreateUserBody,
  type SetGrantsBody,
} from '@hearth/protocol';
import { ADMIN_TOKEN_FILE } from './secret-files';
import { apiConfig } from './config';

const USAGE = `usage: npm run cli -- <command>
  stream-key create <channel>        issue a channel's stream key (prints rtmpUrl, streamKey, playbackUrl)
  stream-key rotate <channel>        replace it; a live stream on the old key ends
  stream-key revoke <channel>        remove it; a live stream on it ends
  stream-key list                    list keys (ids and dates, never secrets)
  channels list                      list channels and who is in them
  channels create <channel> [--private]
                                     create a channel; --private: members only
  channels private <channel> on|off  make a channel members only, or public again
  channels share-routing <channel> auto|webrtc|broadcast
                                     route its screen shares' audience: by the handoff policy,
                                     always WebRTC, or to HLS now
  channels share-cap <channel> <preset>
                                     cap its screen shares: 720p30, 1080p30, 1080p60, 1440p30,
                                     2160p30 or source (every preset)
  channels delete <channel>          delete a channel; everyone in it is disconnected
  users list                         list accounts
  users create <username> [--admin] [--password-stdin]
                                     create an account; without --password-stdin a random
                                     password is generated and printed once; --admin gives it
                                     every grant in every channel
  users disable <username>           disable an account and sign it out everywhere
  users role <username> <owner|admin|member>
                                     set an account's role; naming a new owner makes the old
                                     one an admin (moderators are members with the moderate grant)
  grants list <username>             an account's grants per channel (* = every channel)
  grants set <username> <channel|*> <grant,...>
                                     set its grants there: join, speak, screen-share, moderate, stream
  grants revoke <username> <channel|*>
                                     remove its grants there
  nodes list                         voice and ingest nodes with their status and load
  channels node <channel>            the node holding a channel's core, and its edges
environment: API_URL (default http://127.0.0.1:$API_PORT or :8080), API_ADMIN_TOKEN (default: read
from $API_DATA_DIR/${ADMIN_TOKEN_FILE}, written by \`npm start\`)`;

class CliError extends Error {}

function apiUrl(): string {
  return process.env.API_URL ?? `http://127.0.0.1:${process.env.API_PORT ?? '8080'}`;
}

function adminToken(): string {
  if (process.env.API_ADMIN_TOKEN) return process.env.API_ADMIN_TOKEN;
  const file = path.join(process.env.API_DATA_DIR ?? apiConfig().dataDir, ADMIN_TOKEN_FILE);
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    throw new CliError(`no operator token at ${file}: start the platform with \`npm start\` first`);
  }
}

async function call<S extends z.ZodType>(
  method: string,
  route: string,
  schema: S | null,
  body?: unknown,
): Promise<z.infer<S> | undefined> {
  let response: Response;
  try {
    response = await fetch(`${apiUrl()}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${adminToken()}`,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new CliError(`the api at ${apiUrl()} is not reachable: is \`npm start\` running?`);
  }
  const answer: unknown = response.status === 204 ? undefined : await response.json();
  if (!response.ok) {
    const error = errorBodySchema.safeParse(answer);
    throw new CliError(
      error.success
        ? `${error.data.error.code}: ${error.data.error.message}`
        : `HTTP ${response.status}`,
    );
  }
  return schema ? schema.parse(answer) : undefined;
}

// Arguments are checked here too, so a typo gets a clear message before any request is sent.
function parseArgument<S extends z.ZodType>(
  schema: S,
  value: string | undefined,
  what: string,
): z.output<S> {
  if (value === undefined) throw new CliError(USAGE);
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CliError(`invalid ${what}: ${describeZodError(parsed.error)}`);
  return parsed.data as z.output<S>;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // One trailing newline is what `echo` and here-strings add; it is not part of the password.
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

async function createUser(username: string | undefined, flags: string[]): Promise<unknown> {
  const unknown = flags.filter((flag) => flag !== '--admin' && flag !== '--password-stdin');
  if (unknown.length > 0) throw new CliError(`unknown option ${unknown[0]}\n${USAGE}`);
  const generated = !flags.includes('--password-stdin');
  const password = generated ? randomBytes(18).toString('base64url') : await readStdin();
  const body: CreateUserBody = {
    username: parseArgument(z.string().min(1), username, 'username'),
    password: parseArgument(passwordSchema, password, 'password'),
    admin: flags.includes('--admin'),
  };
  const user = await call('POST', '/api/admin/users', adminUserSchema, body);
  return generated ? { ...user, password } : user;
}

async function run(args: string[]): Promise<unknown> {
  const [group, command, target, ...rest] = args;
  const channelPath = () =>
    `/api/channels/${encodeURIComponent(parseArgument(channelNameSchema, target, 'channel'))}`;
  const userPath = () =>
    `/api/admin/users/${encodeURIComponent(parseArgument(z.string().min(1), target, 'username'))}`;
  const scopePath = () =>
    `${userPath()}/grants/${encodeURIComponent(parseArgument(grantScopeSchema, rest[0], 'channel'))}`;

  if (group === 'stream-key' && (command === 'create' || command === 'rotate')) {
    const route = `${channelPath()}/stream-key${command === 'rotate' ? '/rotate' : ''}`;
    const issued = await call('POST', route, issuedStreamKeySchema);
    return {
      rtmpUrl: issued!.rtmpUrl,
      streamKey: issued!.streamKey,
      playbackUrl: issued!.playbackUrl,
    };
  }
  if (group === 'stream-key' && command === 'revoke') {
    await call('DELETE', `${channelPath()}/stream-key`, null);
    return { revoked: target };
  }
  if (group === 'stream-key' && command === 'list')
    return call('GET', '/api/stream-keys', streamKeyListSchema);
  if (group === 'channels' && command === 'list')
    return call('GET', '/api/channels', channelListSchema);
  if (group === 'channels' && command === 'create') {
    const name = parseArgument(channelNameSchema, target, 'channel');
    const unknown = rest.filter((flag) => flag !== '--private');
    if (unknown.length > 0) throw new CliError(`unknown option ${unknown[0]}\n${USAGE}`);
    return call('POST', '/api/channels', channelSchema, {
      name,
      private: rest.includes('--private'),
    });
  }
  if (group === 'channels' && command === 'private') {
    const setting = parseArgument(z.enum(['on', 'off']), rest[0], 'on or off');
    return call('PATCH', channelPath(), channelSchema, { private: setting === 'on' });
  }
  if (group === 'channels' && command === 'share-routing') {
    const routing = parseArgument(
      shareRoutingSchema,
      rest[0],
      'routing (auto, webrtc or broadcast)',
    );
    return call('PUT', `${channelPath()}/share-routing`, channelSchema, { routing });
  }
  if (group === 'channels' && command === 'share-cap') {
    const preset = parseArgument(
      sharePresetIdSchema,
      rest[0],
      `preset (one of ${SHARE_PRESET_IDS.join(', ')})`,
    );
    return call('PATCH', channelPath(), channelSchema, { maxSharePreset: preset });
  }
  if (group === 'channels' && command === 'delete') {
    await call('DELETE', channelPath(), null);
    return { deleted: target };
  }
  if (group === 'users' && command === 'list')
    return call('GET', '/api/admin/users', adminUserListSchema);
  if (group === 'users' && command === 'create') return createUser(target, rest);
  if (group === 'users' && command === 'disable')
    return call('POST', `${userPath()}/disable`, adminUserSchema);
  if (group === 'users' && command === 'role') {
    const role = parseArgument(accountRoleSchema, rest[0], 'role');
    return call('PUT', `${userPath()}/role`, adminUserSchema, { role });
  }
  if (group === 'grants' && command === 'list')
    return call('GET', `${userPath()}/grants`, userGrantsSchema);
  if (group === 'grants' && command === 'set') {
    const grants = parseArgument(
      z
        .string()
        .transform((list) => list.split(',').map((grant) => grant.trim()))
        .pipe(z.array(grantSchema).min(1)),
      rest[1],
      'grants',
    );
    const body: SetGrantsBody = { grants };
    return call('PUT', scopePath(), userGrantsSchema, body);
  }
  if (group === 'grants' && command === 'revoke') {
    await call('DELETE', scopePath(), null);
    return call('GET', `${userPath()}/grants`, userGrantsSchema);
  }
  if (group === 'nodes' && command === 'list') return call('GET', '/api/nodes', nodeListSchema);
  if (group === 'channels' && command === 'node')
    return call('GET', `${channelPath()}/sfu`, channelSfuStatusSchema);
  throw new CliError(USAGE);
}

try {
  // The result is the last line, as one line of JSON, so scripts can read it.
  process.stdout.write(`${JSON.stringify(await run(process.argv.slice(2)))}\n`);
} catch (error) {
  process.stderr.write(`${error instanceof CliError ? error.message : String(error)}\n`);
  process.exit(1);
}
