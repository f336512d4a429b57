import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelNodeSchema, channelSchema, nodeListSchema } from '@hearth/protocol';
import { TEST_ADMIN_TOKEN, ensureChannel } from '../api/test/support/accounts';
import { startRedis, type TestRedis } from '../api/test/support/redis';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { expectAudioFrom, hearthState, launchChromium } from './support/browser';
import { freePort, startVoiceNodeProcess, type VoiceNodeProcess } from './support/voice-nodes';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const clusterSecret = 'e2e-cluster-secret-0123456789abcdef0123456789';
// The operator token of every test api: it creates the channel, which guests may not.
const adminToken = TEST_ADMIN_TOKEN;

let redis: TestRedis;
let api: TestApi;
let browser: Browser;
const nodes = new Map<string, VoiceNodeProcess>();
// Each node's signaling port, chosen before the api starts: its Content-Security-Policy lets pages
// connect only to the origins in allowedOrigins, where voice nodes apart from the api are listed.
const nodePorts = new Map<string, number>();
const contexts: BrowserContext[] = [];

// Three voice-sfu processes share a channel through the api and Redis. voice-a and voice-b take one
// participant each and voice-c three. voice-c starts only after the first two guests are placed,
// so whatever the nodes' CPU readings, the first two guests land on voice-a and voice-b and the
// third on voice-c, which then has room for the guests that move when their nodes die.
beforeAll(async () => {
  redis = await startRedis();
  for (const id of ['voice-a', 'voice-b', 'voice-c']) nodePorts.set(id, await freePort());
  api = await startTestApi({
    api: {
      webDistDir,
      allowedOrigins: [...nodePorts.values()].map((port) => `http://127.0.0.1:${port}`).join(','),
      embeddedVoice: 'false',
      redisUrl: redis.url,
      clusterSecret,
      nodeTimeoutMs: '1500',
      sweepIntervalMs: '250',
    },
  });
  await startNode('voice-a', 1);
  await startNode('voice-b', 1);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  for (const node of nodes.values()) await node.stop();
  await api?.close();
  await redis?.stop();
});

async function startNode(id: string, maxParticipants: number): Promise<void> {
  nodes.set(
    id,
    await startVoiceNodeProcess({
      id,
      apiUrl: api.baseUrl,
      clusterSecret,
      maxParticipants,
      port: nodePorts.get(id),
    }),
  );
  await eventually(async () => (await upNodes()).includes(id), 20_000, `${id} registered`);
}

async function upNodes(): Promise<string[]> {
  const response = await fetch(`${api.baseUrl}/api/nodes`, {
    headers: { authorization: `Bearer ${adminToken}` },
  });
  const { nodes: list } = nodeListSchema.parse(await response.json());
  return list.filter((node) => node.status === 'up').map((node) => node.id);
}

async function openGuest(name: string, channel: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') process.stdout.write(`[${name}] ${message.text()}\n`);
  });
  await page.goto(`${api.baseUrl}/voice/${channel}?name=${encodeURIComponent(name)}&autojoin=1`);
  await eventually(
    async () => (await hearthState(page))?.connection === 'connected',
    20_000,
    `${name} connected`,
  );
  return page;
}

// Which node serves a page: the placement the client used, read from its test hook.
function nodeOf(page: Page): Promise<string | null> {
  return page.evaluate(() =>
    (globalThis as unknown as { __hearth: { nodeId(): string | null } }).__hearth.nodeId(),
  );
}

async function everyoneHearsEveryone(pages: Page[]): Promise<void> {
  for (const page of pages) {
    await eventually(
      async () => (await hearthState(page))?.participants.length === pages.length,
      20_000,
      'every participant on every page',
    ).catch(async (error: unknown) => {
      // Who sees whom, and where each page is, says which link lost what.
      const views = await Promise.all(
        pages.map(async (each) => {
          const state = await hearthState(each);
          const names = state?.participants.map((p) => p.displayName).join(',');
          return `${await nodeOf(each)} ${state?.peerId} [${names}]`;
        }),
      );
      const logs = [...nodes.values()].map((node) => `--- ${node.id}\n${node.output()}`);
      throw new Error(`${String(error)}\n${views.join('\n')}\n${logs.join('\n')}`);
    });
  }
  for (const page of pages) {
    const sources = await expectAudioFrom(page, pages.length - 1);
    expect(sources).not.toContain((await hearthState(page))!.peerId);
  }
}

describe('a channel spanning three voice-sfu processes', () => {
  it('browsers on different nodes hear each other, and survive the loss of an edge node', async () => {
    const channel = 'cluster';
    await ensureChannel(api.baseUrl, channel);
    const ada = await openGuest('Ada', channel);
    const bo = await openGuest('Bo', channel);
    await startNode('voice-c', 3);
    const cy = await openGuest('Cy', channel);
    const pages = [ada, bo, cy];
    const [core, edge, third] = await Promise.all(pages.map(nodeOf));
    expect([core, edge].sort()).toEqual(['voice-a', 'voice-b']);
    expect(third).toBe('voice-c');
    await everyoneHearsEveryone(pages);
    // The channel list shows everyone, whichever node serves them.
    await eventually(
      async () => {
        const response = await fetch(`${api.baseUrl}/api/channels/${channel}`, {
          headers: { authorization: `Bearer ${adminToken}` },
        });
        const names = channelSchema
          .parse(await response.json())
          .participants.map((participant) => participant.displayName);
        return names.sort().join() === 'Ada,Bo,Cy';
      },
      5000,
      'the channel listing all three',
    );

    // Kill Bo's node, an edge, the hard way. Bo's client loses its node, asks the api again, and
    // lands on voice-c, the only node with room; everyone hears everyone again.
    const joinsBefore = (await hearthState(bo))!.joinCount;
    await nodes.get(edge!)!.kill();
    await eventually(async () => !(await upNodes()).includes(edge!), 10_000, `${edge} marked down`);
    await eventually(
      async () => {
        const state = await hearthState(bo);
        return state?.connection === 'connected' && state.joinCount > joinsBefore;
      },
      30_000,
      'Bo reconnected',
    );
    expect(await nodeOf(bo)).toBe('voice-c');
    await everyoneHearsEveryone(pages);

    // Now the core's node dies. The channel's core moves to voice-c, the only node left, and Ada
    // follows it there.
    const adaJoins = (await hearthState(ada))!.joinCount;
    await nodes.get(core!)!.kill();
    await eventually(
      async () => {
        const state = await hearthState(ada);
        return state?.connection === 'connected' && state.joinCount > adaJoins;
      },
      30_000,
      'Ada reconnected',
    );
    expect(await nodeOf(ada)).toBe('voice-c');
    // Once voice-a is marked down, the channel's core is voice-c.
    await eventually(
      async () => {
        const response = await fetch(`${api.baseUrl}/api/channels/${channel}/node`, {
          headers: { authorization: `Bearer ${adminToken}` },
        });
        return channelNodeSchema.parse(await response.json()).nodeId === 'voice-c';
      },
      10_000,
      'the core moving to voice-c',
    );
    await everyoneHearsEveryone(pages);
  }, 180_000);
});
