import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/migrations';
import type { SqlClient } from '../../src/db/sql-client';
import { createStores, type Stores } from '../../src/db/stores';
import { testBackends, truncateAll } from '../support/databases';

const hash = (text: string) => createHash('sha256').update(text).digest();
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000);

describe.each(testBackends())('stores on $name', (backend) => {
  let db: SqlClient;
  let stores: Stores;

  beforeAll(async () => {
    await backend.setUp();
    db = await backend.open();
    await migrate(db);
    stores = createStores(db);
  });
  beforeEach(() => truncateAll(db));
  afterAll(async () => {
    await db?.close();
    await backend.tearDown();
  });

  const newUser = (username = 'ada') =>
    stores.users.create({ username, displayName: username.toUpperCase(), passwordHash: 'h' });

  describe('SqlChannelDirectory', () => {
    it('create() then list() and get() return the channel; a second create() is conflict', async () => {
      const user = await newUser();
      const lobby = await stores.channels.create('lobby', user.id);
      expect(lobby).toEqual({
        name: 'lobby',
        createdAt: expect.any(Date),
        createdBy: user.id,
        private: false,
        maxSharePreset: 'source',
        shareRouting: 'auto',
      });
      await stores.channels.create('games');
      expect((await stores.channels.list()).map((channel) => channel.name)).toEqual([
        'lobby',
        'games',
      ]);
      expect(await stores.channels.get('lobby')).toEqual(lobby);
      expect(await stores.channels.get('nope')).toBeUndefined();
      await expect(stores.channels.create('lobby')).rejects.toMatchObject({ code: 'conflict' });
    });

    it('create() with private and update() store the settings, each leaving the other; update() on none is not_found', async () => {
      expect(await stores.channels.create('club', undefined, { private: true })).toMatchObject({
        private: true,
        maxSharePreset: 'source',
      });
      expect(await stores.channels.update('club', { private: false })).toMatchObject({
        private: false,
        maxSharePreset: 'source',
      });
      expect(await stores.channels.update('club', { maxSharePreset: '1080p30' })).toMatchObject({
        private: false,
        maxSharePreset: '1080p30',
      });
      expect(await stores.channels.update('club', { shareRouting: 'webrtc' })).toMatchObject({
        private: false,
        maxSharePreset: '1080p30',
        shareRouting: 'webrtc',
      });
      expect(await stores.channels.get('club')).toMatchObject({
        private: false,
        maxSharePreset: '1080p30',
      });
      await expect(stores.channels.update('nope', { private: true })).rejects.toMatchObject({
        code: 'not_found',
      });
    });

    it('ensure() creates a missing channel once, also when called concurrently', async () => {
      const results = await Promise.all([
        stores.channels.ensure('auto'),
        stores.channels.ensure('auto'),
      ]);
      expect(results[0]).toEqual(results[1]);
      expect(results[0]).toMatchObject({ name: 'auto', createdBy: null });
      expect(await stores.channels.list()).toHaveLength(1);
    });

    it("delete() removes the channel, its stream key and the grants given in it; again it's not_found", async () => {
      const user = await newUser();
      await stores.channels.create('doomed');
      await stores.streamKeys.put({
        id: '0123456789abcdef',
        channel: 'doomed',
        secretHash: hash('s'),
        createdAt: new Date(),
        lastUsedAt: null,
      });
      await stores.memberships.set(user.id, 'doomed', ['moderate']);
      await stores.memberships.set(user.id, '*', ['stream']);
      await stores.channels.delete('doomed');
      expect(await stores.channels.get('doomed')).toBeUndefined();
      expect(await stores.streamKeys.byChannel('doomed')).toBeUndefined();
      expect(await stores.memberships.forUser(user.id)).toEqual([
        { channel: '*', grants: ['stream'] },
      ]);
      await expect(stores.channels.delete('doomed')).rejects.toMatchObject({ code: 'not_found' });
    });
  });

  describe('SqlStreamKeyStore', () => {
    it('put() stores a key found by id and channel; a second put() replaces the channel key', async () => {
      await stores.channels.create('show');
      const first = {
        id: 'aaaaaaaaaaaaaaaa',
        channel: 'show',
        secretHash: hash('one'),
        createdAt: new Date('2024-01-01T00:00:00Z'),
        lastUsedAt: null,
      };
      await stores.streamKeys.put(first);
      expect(await stores.streamKeys.byId(first.id)).toEqual(first);
      expect(await stores.streamKeys.byChannel('show')).toEqual(first);
      const used = { ...first, lastUsedAt: new Date('2024-01-02T00:00:00Z') };
      await stores.streamKeys.put(used);
      expect(await stores.streamKeys.byId(first.id)).toEqual(used);
      const second = { ...first, id: 'bbbbbbbbbbbbbbbb', secretHash: hash('two') };
      await stores.streamKeys.put(second);
      expect(await stores.streamKeys.byId(first.id)).toBeUndefined();
      expect(await stores.streamKeys.list()).toEqual([second]);
      expect(Buffer.isBuffer((await stores.streamKeys.list())[0]!.secretHash)).toBe(true);
      await stores.streamKeys.delete('show');
      expect(await stores.streamKeys.list()).toEqual([]);
    });

    it('put() for a channel that does not exist is refused by the foreign key', async () => {
      await expect(
        stores.streamKeys.put({
          id: 'cccccccccccccccc',
          channel: 'ghost',
          secretHash: hash('x'),
          createdAt: new Date(),
          lastUsedAt: null,
        }),
      ).rejects.toMatchObject({ code: '23503' });
    });
  });

  describe('UserStore', () => {
    it('create() then byUsername() in any case, byId() and list(); a taken name in other case is conflict', async () => {
      const ada = await newUser('Ada');
      expect(ada).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        username: 'Ada',
        displayName: 'ADA',
        passwordHash: 'h',
        createdAt: expect.any(Date),
        disabledAt: null,
        role: 'member',
      });
      expect(await stores.users.byUsername('aDA')).toEqual(ada);
      expect(await stores.users.byId(ada.id)).toEqual(ada);
      expect(await stores.users.byId('not-a-uuid')).toBeUndefined();
      expect(await stores.users.byId(randomUUID())).toBeUndefined();
      await expect(newUser('ADA')).rejects.toMatchObject({ code: 'conflict' });
      await newUser('bob');
      expect((await stores.users.list()).map((user) => user.username)).toEqual(['Ada', 'bob']);
    });

    it('create() with firstIsOwner makes only the first owner; setRole() hands ownership over', async () => {
      const first = await stores.users.create({
        username: 'first',
        displayName: 'First',
        passwordHash: 'h',
        firstIsOwner: true,
      });
      const second = await stores.users.create({
        username: 'second',
        displayName: 'Second',
        passwordHash: 'h',
        firstIsOwner: true,
      });
      expect([first.role, second.role]).toEqual(['owner', 'member']);
      expect((await stores.users.setRole(second.id, 'owner')).role).toBe('owner');
      // One owner at a time: the former one is an admin now.
      expect((await stores.users.byId(first.id))?.role).toBe('admin');
      await expect(stores.users.setRole(randomUUID(), 'admin')).rejects.toMatchObject({
        code: 'not_found',
      });
    });

    it('disable() dates the account once and revokes its refresh tokens; an unknown id is not_found', async () => {
      const user = await newUser();
      await stores.refreshTokens.issue(user.id, randomUUID(), {
        tokenHash: hash('rt'),
        expiresAt: inDays(1),
      });
      const first = new Date('2024-05-01T00:00:00Z');
      expect((await stores.users.disable(user.id, first)).disabledAt).toEqual(first);
      expect((await stores.users.disable(user.id, new Date())).disabledAt).toEqual(first);
      expect(
        await stores.refreshTokens.rotate(hash('rt'), {
          tokenHash: hash('n'),
          expiresAt: inDays(1),
        }),
      ).toEqual({ kind: 'revoked' });
      await expect(stores.users.disable(randomUUID())).rejects.toMatchObject({ code: 'not_found' });
    });
  });

  describe('MembershipStore', () => {
    it('set() adds or replaces grants per scope; forUser() lists * first; remove() says whether it removed', async () => {
      const user = await newUser();
      await stores.memberships.set(user.id, 'zeta', ['join']);
      await stores.memberships.set(user.id, 'alpha', ['speak', 'speak', 'stream']);
      await stores.memberships.set(user.id, '*', ['moderate']);
      await stores.memberships.set(user.id, 'zeta', ['join', 'moderate']);
      expect(await stores.memberships.forUser(user.id)).toEqual([
        { channel: '*', grants: ['moderate'] },
        { channel: 'alpha', grants: ['speak', 'stream'] },
        { channel: 'zeta', grants: ['join', 'moderate'] },
      ]);
      expect(await stores.memberships.remove(user.id, 'alpha')).toBe(true);
      expect(await stores.memberships.remove(user.id, 'alpha')).toBe(false);
      expect(await stores.memberships.forUser(user.id)).toHaveLength(2);
    });

    it('memberships go with their account', async () => {
      const user = await newUser();
      await stores.memberships.set(user.id, '*', ['join']);
      await db.query('DELETE FROM users WHERE id = $1', [user.id]);
      expect(await stores.memberships.forUser(user.id)).toEqual([]);
    });
  });

  describe('RefreshTokenStore', () => {
    it('rotate() uses a token up once: presenting it again revokes the whole family', async () => {
      const user = await newUser();
      const family = randomUUID();
      await stores.refreshTokens.issue(user.id, family, {
        tokenHash: hash('t1'),
        expiresAt: inDays(30),
      });
      expect(
        await stores.refreshTokens.rotate(hash('t1'), {
          tokenHash: hash('t2'),
          expiresAt: inDays(30),
        }),
      ).toEqual({ kind: 'rotated', userId: user.id, familyId: family });
      expect(
        await stores.refreshTokens.rotate(hash('t1'), {
          tokenHash: hash('x'),
          expiresAt: inDays(30),
        }),
      ).toEqual({ kind: 'reused', userId: user.id, familyId: family });
      // The token issued by the legitimate rotation is revoked with its family.
      expect(
        await stores.refreshTokens.rotate(hash('t2'), {
          tokenHash: hash('t3'),
          expiresAt: inDays(30),
        }),
      ).toEqual({ kind: 'revoked' });
    });

    it('rotate() refuses unknown and expired tokens as invalid', async () => {
      const user = await newUser();
      await stores.refreshTokens.issue(user.id, randomUUID(), {
        tokenHash: hash('old'),
        expiresAt: new Date(Date.now() - 1000),
      });
      const next = { tokenHash: hash('n'), expiresAt: inDays(1) };
      expect(await stores.refreshTokens.rotate(hash('nope'), next)).toEqual({ kind: 'invalid' });
      expect(await stores.refreshTokens.rotate(hash('old'), next)).toEqual({ kind: 'invalid' });
    });

    it('issue() forgets the account’s expired tokens', async () => {
      const user = await newUser();
      await stores.refreshTokens.issue(user.id, randomUUID(), {
        tokenHash: hash('expired'),
        expiresAt: new Date(Date.now() - 1000),
      });
      await stores.refreshTokens.issue(user.id, randomUUID(), {
        tokenHash: hash('fresh'),
        expiresAt: inDays(1),
      });
      const rows = await db.query('SELECT token_hash FROM refresh_tokens');
      expect(rows.map((row) => Buffer.from(row.token_hash as Uint8Array))).toEqual([hash('fresh')]);
    });

    it('revokeFamilyOf() ends one login and leaves the others; revokeFamily() does the same by id', async () => {
      const user = await newUser();
      const [phone, laptop] = [randomUUID(), randomUUID()];
      await stores.refreshTokens.issue(user.id, phone, {
        tokenHash: hash('p'),
        expiresAt: inDays(1),
      });
      await stores.refreshTokens.issue(user.id, laptop, {
        tokenHash: hash('l'),
        expiresAt: inDays(1),
      });
      await stores.refreshTokens.revokeFamilyOf(hash('p'));
      await stores.refreshTokens.revokeFamilyOf(hash('unknown'));
      const next = (text: string) => ({ tokenHash: hash(text), expiresAt: inDays(1) });
      expect(await stores.refreshTokens.rotate(hash('p'), next('p2'))).toEqual({ kind: 'revoked' });
      expect(await stores.refreshTokens.rotate(hash('l'), next('l2'))).toMatchObject({
        kind: 'rotated',
      });
      await stores.refreshTokens.revokeFamily(laptop);
      expect(await stores.refreshTokens.rotate(hash('l2'), next('l3'))).toEqual({
        kind: 'revoked',
      });
    });

    it('rotate() of one token by two callers at once rotates once and sees the other as reuse', async () => {
      const user = await newUser();
      await stores.refreshTokens.issue(user.id, randomUUID(), {
        tokenHash: hash('race'),
        expiresAt: inDays(1),
      });
      const results = await Promise.all([
        stores.refreshTokens.rotate(hash('race'), { tokenHash: hash('a'), expiresAt: inDays(1) }),
        stores.refreshTokens.rotate(hash('race'), { tokenHash: hash('b'), expiresAt: inDays(1) }),
      ]);
      expect(results.map((result) => result.kind).sort()).toEqual(['reused', 'rotated']);
    });
  });

  describe('SqlStreamHistory', () => {
    it('records a stream from start to end; a second end keeps the first', async () => {
      const id = randomUUID();
      const startedAt = new Date('2024-06-01T10:00:00Z');
      await stores.streamHistory.started({
        id,
        channel: 'tv',
        keyId: 'aaaaaaaaaaaaaaaa',
        publisherIp: '127.0.0.1',
        storagePrefix: 'live/tv',
        startedAt,
        nodeId: 'ingest-a',
      });
      const renditions = [{ name: '720p30', width: 1280, height: 720, fps: 30, bitrateKbps: 2128 }];
      await stores.streamHistory.renditions(id, renditions);
      await stores.streamHistory.live(id, new Date('2024-06-01T10:00:04Z'));
      await stores.streamHistory.ended(id, new Date('2024-06-01T11:00:00Z'), 'publisher left');
      await stores.streamHistory.ended(id, new Date('2024-06-01T12:00:00Z'), 'again');
      expect(await db.query('SELECT * FROM stream_history')).toEqual([
        {
          id,
          channel: 'tv',
          key_id: 'aaaaaaaaaaaaaaaa',
          publisher_ip: '127.0.0.1',
          storage_prefix: 'live/tv',
          renditions,
          started_at: startedAt,
          live_at: new Date('2024-06-01T10:00:04Z'),
          ended_at: new Date('2024-06-01T11:00:00Z'),
          end_reason: 'publisher left',
          node_id: 'ingest-a',
        },
      ]);
    });

    it("closeNode() ends a node's open rows but those kept; reopen() opens one again", async () => {
      const started = (id: string, nodeId: string) =>
        stores.streamHistory.started({
          id,
          channel: `c-${id.slice(0, 8)}`,
          keyId: 'aaaaaaaaaaaaaaaa',
          publisherIp: '127.0.0.1',
          storagePrefix: 'live/x',
          startedAt: new Date(),
          nodeId,
        });
      const [kept, closed, elsewhere] = [randomUUID(), randomUUID(), randomUUID()];
      await started(kept, 'ingest-a');
      await started(closed, 'ingest-a');
      await started(elsewhere, 'ingest-b');
      expect((await stores.streamHistory.nodesWithOpenStreams()).sort()).toEqual([
        'ingest-a',
        'ingest-b',
      ]);
      const at = new Date('2024-06-01T12:00:00Z');
      expect(await stores.streamHistory.closeNode('ingest-a', at, 'node gone', [kept])).toBe(1);
      const open = async () =>
        (await db.query('SELECT id FROM stream_history WHERE ended_at IS NULL ORDER BY id')).map(
          (row) => row.id,
        );
      expect(await open()).toEqual([kept, elsewhere].sort());
      await stores.streamHistory.reopen(closed);
      expect(await open()).toEqual([kept, closed, elsewhere].sort());
      expect(await stores.streamHistory.closeNode('ingest-a', at, 'node gone')).toBe(2);
      expect(await open()).toEqual([elsewhere]);
    });
  });

  describe('SqlSessionHistory', () => {
    it('open() resolves with an id that close() ends once', async () => {
      const joinedAt = new Date('2024-06-01T10:00:00Z');
      const id = await stores.sessions.open({
        userId: 'guest:1',
        displayName: 'Ada',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: crypto.randomUUID(),
        joinedAt,
      });
      const other = await stores.sessions.open({
        userId: 'guest:2',
        displayName: 'Bo',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: crypto.randomUUID(),
      });
      expect(id).not.toBe(other);
      await stores.sessions.close(id, new Date('2024-06-01T10:30:00Z'));
      await stores.sessions.close(id, new Date('2024-06-01T11:00:00Z'));
      expect(
        await db.query(
          'SELECT user_id, display_name, channel, node_id, joined_at, left_at FROM session_history WHERE id = $1',
          [id],
        ),
      ).toEqual([
        {
          user_id: 'guest:1',
          display_name: 'Ada',
          channel: 'lobby',
          node_id: 'node-a',
          joined_at: joinedAt,
          left_at: new Date('2024-06-01T10:30:00Z'),
        },
      ]);
      const [open] = await db.query('SELECT left_at FROM session_history WHERE id = $1', [other]);
      expect(open).toEqual({ left_at: null });
    });

    const at = (minute: number) => new Date(Date.UTC(2024, 5, 1, 10, minute));
    const replayed = (peerId: string, name: string, channel = 'lobby') => ({
      peerId,
      channel,
      userId: `guest:${name}`,
      displayName: name,
    });
    const openRows = async () =>
      (
        await db.query(
          `SELECT node_id, peer_id, display_name FROM session_history WHERE left_at IS NULL
           ORDER BY node_id, display_name`,
        )
      ).map((row) => `${String(row.node_id)}/${String(row.display_name)}`);

    it('open() of a peer whose row is open keeps that row; close() with seenUpTo spares a row seen later', async () => {
      const peerId = crypto.randomUUID();
      const session = {
        userId: 'guest:1',
        displayName: 'Ada',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId,
      };
      const id = await stores.sessions.open({ ...session, joinedAt: at(0) });
      expect(await stores.sessions.open({ ...session, joinedAt: at(5) })).toBe(id);
      // Seen at minute 5 now: a close that only knew it up to minute 1 leaves it open.
      await stores.sessions.close(id, at(6), { seenUpTo: at(1) });
      expect(await openRows()).toEqual(['node-a/Ada']);
      await stores.sessions.close(id, at(7), { seenUpTo: at(5) });
      expect(await openRows()).toEqual([]);
      // Once closed, the same peer opens a new row.
      expect(await stores.sessions.open({ ...session, joinedAt: at(8) })).not.toBe(id);
    });

    it('replay() keeps the open rows of replayed peers, opens the missing ones and closes the rest of that node only', async () => {
      const [ada, bo, cy, dee] = [1, 2, 3, 4].map(() => crypto.randomUUID()) as [
        string,
        string,
        string,
        string,
      ];
      const adaId = await stores.sessions.open({
        userId: 'guest:Ada',
        displayName: 'Ada',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: ada,
        joinedAt: at(0),
      });
      const boId = await stores.sessions.open({
        userId: 'guest:Bo',
        displayName: 'Bo',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: bo,
        joinedAt: at(0),
      });
      await stores.sessions.open({
        userId: 'guest:Dee',
        displayName: 'Dee',
        channel: 'lobby',
        nodeId: 'node-b',
        peerId: dee,
        joinedAt: at(0),
      });
      // node-a comes back serving Ada (still open here) and Cy (whose join was never recorded).
      const ids = await stores.sessions.replay(
        'node-a',
        [replayed(ada, 'Ada'), replayed(cy, 'Cy'), replayed(cy, 'Cy')],
        at(10),
      );
      expect(ids.get(ada)).toBe(adaId);
      expect([...ids.keys()].sort()).toEqual([ada, cy].sort());
      expect(await openRows()).toEqual(['node-a/Ada', 'node-a/Cy', 'node-b/Dee']);
      const [bosRow] = await db.query('SELECT left_at FROM session_history WHERE id = $1', [boId]);
      expect(bosRow).toEqual({ left_at: at(10) });
      // An empty replay (a node restarted with nobody on it) closes all of the node's rows.
      expect((await stores.sessions.replay('node-a', [], at(11))).size).toBe(0);
      expect(await openRows()).toEqual(['node-b/Dee']);
      expect(await stores.sessions.nodesWithOpenSessions()).toEqual(['node-b']);
    });

    it('closeNode() closes the rows of a node seen before the cut-off and spares those replayed after it', async () => {
      const [ada, bo] = [crypto.randomUUID(), crypto.randomUUID()];
      await stores.sessions.open({
        userId: 'guest:Ada',
        displayName: 'Ada',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: ada,
        joinedAt: at(0),
      });
      await stores.sessions.open({
        userId: 'guest:Bo',
        displayName: 'Bo',
        channel: 'lobby',
        nodeId: 'node-a',
        peerId: bo,
        joinedAt: at(0),
      });
      // The node was marked down at minute 5 and replayed only Ada at minute 6 (Bo's row closed
      // then), before the close for minute 5 ran.
      await stores.sessions.replay('node-a', [replayed(ada, 'Ada')], at(6));
      expect(await stores.sessions.closeNode('node-a', at(5), at(5))).toBe(0);
      expect(await openRows()).toEqual(['node-a/Ada']);
      expect(await stores.sessions.closeNode('node-a', at(7), at(7))).toBe(1);
      expect(await openRows()).toEqual([]);
      expect(await stores.sessions.nodesWithOpenSessions()).toEqual([]);
    });
  });
});
