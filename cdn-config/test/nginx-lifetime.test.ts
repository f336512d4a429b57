import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { startNginxEdge } from '../src/edge';
import { freePort, isRunning, type NginxProcess } from '../src/nginx-process';

const here = path.dirname(fileURLToPath(import.meta.url));
const edges: NginxProcess[] = [];

afterEach(async () => {
  for (const edge of edges.splice(0)) await edge.stop();
});

async function edgeOn(port: number): Promise<NginxProcess> {
  const edge = await startNginxEdge({
    originUrl: 'http://127.0.0.1:9',
    bucket: 'hearth-test',
    port,
  });
  edges.push(edge);
  return edge;
}

describe('nginx edge lifetime', () => {
  it('an edge left on the port by an earlier run is stopped and replaced, never reused', async () => {
    const port = await freePort();
    const stale = await edgeOn(port);
    const fresh = await edgeOn(port);
    expect(fresh.replacedStalePids).toEqual([stale.pid]);
    expect(fresh.pid).not.toBe(stale.pid);
    await expect.poll(() => stale.exited).toBe(true);
    expect(isRunning(fresh.pid)).toBe(true);
    const response = await fetch(`${fresh.url}/live/x/master.m3u8`);
    expect(response.headers.get('server')).toMatch(/nginx/);
  });

  it('a port held by another program is an error, not an edge', async () => {
    const blocker = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      await expect(edgeOn(port)).rejects.toThrow(`port ${port} is in use by another program`);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('nginx dies with the process that started it, even when that one is SIGKILLed', async () => {
    const owner = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(here, 'support/start-edge.ts')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      owner.stdout!.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
      owner.once('exit', () => reject(new Error('the owner exited before starting nginx')));
    });
    expect(isRunning(pid)).toBe(true);
    owner.kill('SIGKILL');
    await expect.poll(() => isRunning(pid), { timeout: 5000 }).toBe(false);
  });
});
