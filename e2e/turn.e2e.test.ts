import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@hearth/server-common';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { CoturnProcess } from '../api/src/turn/coturn-process';
import { expectAudioFrom, hearthState, launchChromium } from './support/browser';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const SECRET = 'turn-e2e-secret-0123456789abcdef0123456789';
// Above Linux's ephemeral range (32768-60999), so no host port of Chromium or mediasoup falls in
// it: a transport whose remote port is in it reaches mediasoup through coturn.
const RELAY_PORTS = { min: 61500, max: 61599 };

let coturn: CoturnProcess;
let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];
const webRtcTransports: types.WebRtcTransport[] = [];

beforeAll(async () => {
  // The voice node announces 127.0.0.1, so coturn must relay to loopback peers: only this test's
  // coturn does, on loopback.
  coturn = await CoturnProcess.start(
    {
      listenIp: '127.0.0.1',
      realm: 'hearth-e2e',
      secret: SECRET,
      relayPorts: RELAY_PORTS,
      allowLoopbackPeers: true,
    },
    createLogger('turn-e2e', { level: 'silent' }),
  );
  api = await startTestApi({
    api: { webDistDir, turnUrls: coturn.urls.join(','), turnSecret: SECRET },
  });
  for (const slot of api.voice!.pool.slots) {
    slot.worker.observer.on('newrouter', (router) =>
      router.observer.on('newtransport', (transport) => {
        if (transport.constructor.name === 'WebRtcTransport') {
          webRtcTransports.push(transport as types.WebRtcTransport);
        }
      }),
    );
  }
  browser = await launchChromium();
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
  await coturn?.stop();
});

async function openRelayedGuest(name: string, channel: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(
    `${api.baseUrl}/voice/${channel}?name=${encodeURIComponent(name)}&autojoin=1&relay=1`,
  );
  return page;
}

describe('voice through TURN in Chromium', () => {
  it('two guests forced onto TURN relays (iceTransportPolicy relay) hear each other through coturn', async () => {
    const channel = 'turn-e2e';
    await ensureChannel(api.baseUrl, channel);
    const pages = [await openRelayedGuest('Rae', channel), await openRelayedGuest('Lou', channel)];
    for (const page of pages) {
      await eventually(
        async () => (await hearthState(page))?.connection === 'connected',
        20_000,
        'each page connected',
      );
    }
    for (const page of pages) {
      const [source] = await expectAudioFrom(page, 1);
      expect(source).not.toBe((await hearthState(page))!.peerId);
    }

    // Every media path the server sees comes from coturn's relay ports, not from Chromium.
    const live = webRtcTransports.filter((transport) => !transport.closed);
    expect(live).toHaveLength(4);
    for (const transport of live) {
      const tuple = transport.iceSelectedTuple;
      expect(tuple?.remoteIp).toBe('127.0.0.1');
      expect(tuple?.remotePort).toBeGreaterThanOrEqual(RELAY_PORTS.min);
      expect(tuple?.remotePort).toBeLessThanOrEqual(RELAY_PORTS.max);
    }
  }, 90_000);
});
