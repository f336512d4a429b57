import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { publishLikeObs } from '../../e2e/support/obs';
import { eventually } from '../../e2e/support/wait';
import { ingestConfig } from '../src/config';
import { IngestNode } from '../src/ingest-node';
import { FakeControlPlane } from './support/fake-control-plane';
import { MemoryStorage } from './support/publisher-memory-storage';

let node: IngestNode | undefined;
let publisher: ChildProcess | undefined;
let workDir: string | undefined;

afterEach(async () => {
  publisher?.kill('SIGKILL');
  await node?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  node = undefined;
  publisher = undefined;
  workDir = undefined;
});

async function gauge(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`${name} is not registered`);
  return (await metric.get()).values[0]?.value ?? Number.NaN;
}

describe('IngestNode metrics', () => {
  it('ingest_upload_backlog_bytes holds the bytes of segments storage has not taken, as load() reports them, and falls back to 0 once storage takes them', async () => {
    const registry = new Registry();
    const storage = new MemoryStorage();
    const controlPlane = new FakeControlPlane();
    const key = `sk_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('hex')}`;
    controlPlane.addKey(key, 'backlog');
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-work-'));
    node = await IngestNode.start({
      config: ingestConfig({ rtmpPort: '0', workDir }),
      controlPlane,
      storage,
      logger: pino({ level: 'silent' }),
      registry,
    });
    expect(await gauge(registry, 'ingest_upload_backlog_bytes')).toBe(0);
    // Storage stalls on segments, as S3 does in an outage.
    const outage = storage.hold(/\.m4s$/);
    publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${node.rtmp.port}/live/${key}`,
      seconds: 20,
      width: 320,
      height: 180,
      fps: 15,
    });
    const live = node;
    let held = 0;
    await eventually(
      async () => {
        held = await gauge(registry, 'ingest_upload_backlog_bytes');
        // Two segments waiting: the backlog grows while storage is down.
        const waiting = storage.log.filter((e) => e.op === 'put-start' && e.key.endsWith('.m4s'));
        return held > 0 && waiting.length >= 2;
      },
      20_000,
      'segments waiting for storage',
    );
    await eventually(
      async () =>
        (await gauge(registry, 'ingest_upload_backlog_bytes')) === live.load().uploadBacklogBytes,
      5000,
      'the gauge and the load report agreeing',
    );
    expect(live.load().uploadBacklogBytes).toBeGreaterThanOrEqual(held);
    outage.release();
    await eventually(
      async () =>
        live.liveStreamIds.length === 1 &&
        (await gauge(registry, 'ingest_upload_backlog_bytes')) === 0,
      10_000,
      'the backlog drained while the stream is live',
    );
    expect([...storage.objects.keys()].some((name) => name.endsWith('.m4s'))).toBe(true);
  }, 45_000);
});
