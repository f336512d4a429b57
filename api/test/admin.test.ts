import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  adminUserListSchema,
  adminUserSchema,
  meSchema,
  nodeListSchema,
  userGrantsSchema,
} from '@hearth/protocol';
import {
  TEST_ADMIN_TOKEN,
  TEST_PASSWORD,
  bearer,
  expectError,
  guestSession,
  loginAccount,
  operator as operatorHeaders,
  registerAccount,
  sendJson,
} from './support/accounts';
import { requestJoin, startTestApi, type TestApi } from './support/server';

// The operator token every test api is configured with.
const OPERATOR_TOKEN = TEST_ADMIN_TOKEN;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function start(options: Parameters<typeof startTestApi>[0] = {}): Promise<TestApi> {
  api = await startTestApi(options);
  return api;
}

const operator = operatorHeaders();

describe('admin routes', () => {
  it('the operator creates, lists and disables accounts; a disabled account cannot log in or refresh', async () => {
    const { baseUrl } = await start();
    const created = await sendJson(
      `${baseUrl}/api/admin/users`,
      'POST',
      { username: 'Ada', password: TEST_PASSWORD, displayName: 'Ada L.' },
      operator,
    );
    expect(created.status).toBe(201);
    expect(adminUserSchema.parse(await created.json())).toEqual({
      id: expect.any(String),
      username: 'Ada',
      displayName: 'Ada L.',
      role: 'member',
      createdAt: expect.any(String),
      disabledAt: null,
    });
    const session = await loginAccount(baseUrl, 'ada');
    const list = adminUserListSchema.parse(
      await (await fetch(`${baseUrl}/api/admin/users`, { headers: operator })).json(),
    );
    expect(list.users.map((user) => user.username)).toEqual(['Ada']);

    const disabled = await fetch(`${baseUrl}/api/admin/users/ADA/disable`, {
      method: 'POST',
      headers: operator,
    });
    expect(adminUserSchema.parse(await disabled.json()).disabledAt).toEqual(expect.any(String));
    expect(
      await expectError(
        await sendJson(`${baseUrl}/api/auth/login`, 'POST', {
          username: 'ada',
          password: TEST_PASSWORD,
        }),
        401,
        'unauthorized',
      ),
    ).toBe('this account is disabled');
    await expectError(
      await sendJson(`${baseUrl}/api/auth/refresh`, 'POST', {
        refreshToken: session.refreshToken,
      }),
      401,
      'unauthorized',
    );
    await expectError(
      await fetch(`${baseUrl}/api/admin/users/nobody/disable`, {
        method: 'POST',
        headers: operator,
      }),
      404,
      'not_found',
    );
  });

  it('an account created with admin has the admin role and holds every grant everywhere', async () => {
    const { baseUrl } = await start();
    const created = await sendJson(
      `${baseUrl}/api/admin/users`,
      'POST',
      { username: 'root', password: TEST_PASSWORD, admin: true },
      operator,
    );
    expect(adminUserSchema.parse(await created.json()).role).toBe('admin');
    const { accessToken } = await loginAccount(baseUrl, 'root');
    const me = meSchema.parse(
      await (await fetch(`${baseUrl}/api/auth/me`, { headers: bearer(accessToken) })).json(),
    );
    expect(me.admin).toBe(true);
    expect(me.role).toBe('admin');
    expect([...me.serverGrants].sort()).toEqual(
      ['join', 'moderate', 'screen-share', 'speak', 'stream'].sort(),
    );
  });

  it('grants are set per channel or *, listed, and revoked; bad scopes, users and grants are refused', async () => {
    const { baseUrl } = await start();
    // The first account registered is the owner; ada is an ordinary member.
    await registerAccount(baseUrl, 'owner');
    await registerAccount(baseUrl, 'ada');
    const grantsUrl = `${baseUrl}/api/admin/users/ada/grants`;
    const set = await sendJson(
      `${grantsUrl}/lobby`,
      'PUT',
      { grants: ['stream', 'join'] },
      operator,
    );
    expect(userGrantsSchema.parse(await set.json())).toEqual({
      username: 'ada',
      memberships: [{ channel: 'lobby', grants: ['stream', 'join'] }],
    });
    await sendJson(`${grantsUrl}/*`, 'PUT', { grants: ['moderate'] }, operator);
    expect(
      userGrantsSchema.parse(await (await fetch(grantsUrl, { headers: operator })).json()),
    ).toEqual({
      username: 'ada',
      memberships: [
        { channel: '*', grants: ['moderate'] },
        { channel: 'lobby', grants: ['stream', 'join'] },
      ],
    });
    const revoked = await fetch(`${grantsUrl}/lobby`, { method: 'DELETE', headers: operator });
    expect(revoked.status).toBe(204);
    await expectError(
      await fetch(`${grantsUrl}/lobby`, { method: 'DELETE', headers: operator }),
      404,
      'not_found',
    );
    await expectError(
      await sendJson(`${grantsUrl}/bad%20name`, 'PUT', { grants: ['join'] }, operator),
      400,
      'bad_request',
    );
    await expectError(
      await sendJson(`${grantsUrl}/lobby`, 'PUT', { grants: ['fly'] }, operator),
      400,
      'bad_request',
    );
    await expectError(
      await sendJson(`${grantsUrl}/lobby`, 'PUT', { grants: [] }, operator),
      400,
      'bad_request',
    );
    await expectError(
      await fetch(`${baseUrl}/api/admin/users/nobody/grants`, { headers: operator }),
      404,
      'not_found',
    );
  });

  it('a server-wide moderator manages accounts but cannot give grants it lacks or make admins (403)', async () => {
    const { baseUrl, stores } = await start();
    await registerAccount(baseUrl, 'owner');
    const moderator = await registerAccount(baseUrl, 'mod');
    await registerAccount(baseUrl, 'ada');
    await stores.memberships.set(moderator.user.id, '*', ['moderate']);
    const headers = bearer((await loginAccount(baseUrl, 'mod')).accessToken);
    const grantsUrl = `${baseUrl}/api/admin/users/ada/grants`;
    expect(
      (await sendJson(`${grantsUrl}/*`, 'PUT', { grants: ['moderate'] }, headers)).status,
    ).toBe(200);
    expect(
      await expectError(
        await sendJson(`${grantsUrl}/lobby`, 'PUT', { grants: ['join', 'stream'] }, headers),
        403,
        'forbidden',
      ),
    ).toContain('stream');
    await expectError(
      await sendJson(
        `${baseUrl}/api/admin/users`,
        'POST',
        { username: 'boss', password: TEST_PASSWORD, admin: true },
        headers,
      ),
      403,
      'forbidden',
    );
    expect((await fetch(`${baseUrl}/api/admin/users`, { headers })).status).toBe(200);
  });

  it('guest sessions are refused (403), whatever grants guests hold', async () => {
    const { baseUrl } = await start({ api: { guestGrants: 'join,speak,screen-share' } });
    const headers = await guestSession(baseUrl, 'Mallory');
    expect(
      await expectError(await fetch(`${baseUrl}/api/admin/users`, { headers }), 403, 'forbidden'),
    ).toContain('guests');
    await expectError(
      await sendJson(
        `${baseUrl}/api/admin/users`,
        'POST',
        { username: 'mallory', password: TEST_PASSWORD, admin: true },
        headers,
      ),
      403,
      'forbidden',
    );
  });
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(baseUrl: string, args: string[], stdin = ''): Promise<CliRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'api/src/cli.ts', ...args], {
    cwd: repoRoot,
    env: { ...process.env, API_URL: baseUrl, API_ADMIN_TOKEN: OPERATOR_TOKEN },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(stdin);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

const lastLine = (run: CliRun): unknown => JSON.parse(run.stdout.trim().split('\n').at(-1)!);

describe('admin CLI', () => {
  it('users create/list/disable and grants set/list/revoke work against a running api', async () => {
    const { baseUrl } = await start();
    const created = await cli(
      baseUrl,
      ['users', 'create', 'ada', '--password-stdin'],
      'pass phrase 123\n',
    );
    expect(created).toMatchObject({ code: 0 });
    expect(lastLine(created)).toMatchObject({ username: 'ada', role: 'member', disabledAt: null });
    await loginAccount(baseUrl, 'ada', 'pass phrase 123');

    const generated = await cli(baseUrl, ['users', 'create', 'root', '--admin']);
    expect(lastLine(generated)).toMatchObject({ username: 'root', role: 'admin' });
    const { password } = lastLine(generated) as { password: string };
    expect(password.length).toBeGreaterThanOrEqual(16);
    await loginAccount(baseUrl, 'root', password);

    const set = await cli(baseUrl, ['grants', 'set', 'ada', 'lobby', 'join,stream']);
    expect(lastLine(set)).toEqual({
      username: 'ada',
      memberships: [{ channel: 'lobby', grants: ['join', 'stream'] }],
    });
    const revoked = await cli(baseUrl, ['grants', 'revoke', 'ada', 'lobby']);
    expect(lastLine(revoked)).toEqual({ username: 'ada', memberships: [] });

    const disabled = await cli(baseUrl, ['users', 'disable', 'ada']);
    expect(lastLine(disabled)).toMatchObject({ username: 'ada', disabledAt: expect.any(String) });
    const list = adminUserListSchema.parse(lastLine(await cli(baseUrl, ['users', 'list'])));
    expect(list.users.map((user) => [user.username, user.disabledAt === null])).toEqual([
      ['ada', false],
      ['root', true],
    ]);
  }, 60_000);

  it('channels create/list/share-cap/share-routing/delete, and bad arguments fail with a message and exit code 1', async () => {
    const { baseUrl } = await start();
    expect(lastLine(await cli(baseUrl, ['channels', 'create', 'town']))).toMatchObject({
      name: 'town',
    });
    expect(lastLine(await cli(baseUrl, ['channels', 'list']))).toMatchObject({
      channels: [{ name: 'town' }],
    });
    expect(
      lastLine(await cli(baseUrl, ['channels', 'share-cap', 'town', '1440p30'])),
    ).toMatchObject({ name: 'town', maxSharePreset: '1440p30' });
    expect(
      lastLine(await cli(baseUrl, ['channels', 'share-routing', 'town', 'broadcast'])),
    ).toMatchObject({ name: 'town', shareRouting: 'broadcast' });
    const badPreset = await cli(baseUrl, ['channels', 'share-cap', 'town', '4k']);
    expect(badPreset.code).toBe(1);
    expect(badPreset.stderr).toContain('invalid preset (one of 720p30, 1080p30');
    expect(lastLine(await cli(baseUrl, ['channels', 'delete', 'town']))).toEqual({
      deleted: 'town',
    });
    const bad = await cli(baseUrl, ['grants', 'set', 'ada', 'lobby', 'join,fly']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('invalid grants');
    const missing = await cli(baseUrl, ['grants', 'list', 'nobody']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('not_found');
  }, 60_000);

  it('nodes list shows the voice node with its load; channels node names the core after a join', async () => {
    const { baseUrl } = await start();
    const nodes = nodeListSchema.parse(lastLine(await cli(baseUrl, ['nodes', 'list'])));
    expect(nodes.nodes).toEqual([
      expect.objectContaining({
        id: expect.stringMatching(/^embedded-/),
        kind: 'voice',
        status: 'up',
        load: expect.objectContaining({ participants: 0, cpu: expect.any(Number) }),
      }),
    ]);
    const unplaced = await cli(baseUrl, ['channels', 'node', 'town']);
    expect(unplaced.code).toBe(1);
    expect(unplaced.stderr).toContain('not_found');
    await requestJoin(baseUrl, 'Ada', 'town');
    expect(lastLine(await cli(baseUrl, ['channels', 'node', 'town']))).toMatchObject({
      assignment: { channel: 'town', core: nodes.nodes[0]!.id, edges: [] },
    });
  }, 60_000);
});
