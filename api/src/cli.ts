// The admin CLI: `npm run cli -- <command>`. It talks to the running api over HTTP with the
// operator token, so what it changes is what the running platform uses.
import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import {
  channelListSchema,
  errorBodySchema,
  issuedStreamKeySchema,
  streamKeyListSchema,
} from '@hearth/protocol';
import { ADMIN_TOKEN_FILE } from './admin-token';
import { apiConfig } from './config';

const USAGE = `usage: npm run cli -- <command>
  stream-key create <channel>   issue a channel's stream key (prints rtmpUrl, streamKey, playbackUrl)
  stream-key rotate <channel>   replace it; a live stream on the old key ends
  stream-key revoke <channel>   remove it; a live stream on it ends
  stream-key list               list keys (ids and dates, never secrets)
  channels list                 list channels and who is in them
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
): Promise<z.infer<S> | undefined> {
  let response: Response;
  try {
    response = await fetch(`${apiUrl()}${route}`, {
      method,
      headers: { authorization: `Bearer ${adminToken()}`, accept: 'application/json' },
    });
  } catch {
    throw new CliError(`the api at ${apiUrl()} is not reachable: is \`npm start\` running?`);
  }
  const body: unknown = response.status === 204 ? undefined : await response.json();
  if (!response.ok) {
    const error = errorBodySchema.safeParse(body);
    throw new CliError(
      error.success
        ? `${error.data.error.code}: ${error.data.error.message}`
        : `HTTP ${response.status}`,
    );
  }
  return schema ? schema.parse(body) : undefined;
}

async function run(args: string[]): Promise<unknown> {
  const [group, command, channel] = args;
  const needChannel = () => {
    if (!channel) throw new CliError(USAGE);
    return encodeURIComponent(channel);
  };
  if (group === 'stream-key' && (command === 'create' || command === 'rotate')) {
    const route = `/api/channels/${needChannel()}/stream-key${command === 'rotate' ? '/rotate' : ''}`;
    const issued = await call('POST', route, issuedStreamKeySchema);
    return {
      rtmpUrl: issued!.rtmpUrl,
      streamKey: issued!.streamKey,
      playbackUrl: issued!.playbackUrl,
    };
  }
  if (group === 'stream-key' && command === 'revoke') {
    await call('DELETE', `/api/channels/${needChannel()}/stream-key`, null);
    return { revoked: channel };
  }
  if (group === 'stream-key' && command === 'list')
    return call('GET', '/api/stream-keys', streamKeyListSchema);
  if (group === 'channels' && command === 'list')
    return call('GET', '/api/channels', channelListSchema);
  throw new CliError(USAGE);
}

try {
  // The result is the last line, as one line of JSON, so scripts can read it.
  process.stdout.write(`${JSON.stringify(await run(process.argv.slice(2)))}\n`);
} catch (error) {
  process.stderr.write(`${error instanceof CliError ? error.message : String(error)}\n`);
  process.exit(1);
}
