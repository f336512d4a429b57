import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { SupervisedProcess } from '../src/supervised-process';

const here = path.dirname(fileURLToPath(import.meta.url));
const logger = pino({ level: 'silent' });
const supervised: SupervisedProcess[] = [];
// A child that says it is ready, then sleeps.
const SLEEPER = "process.send('ready'); setInterval(() => {}, 1000)";

afterEach(async () => {
  for (const child of supervised.splice(0)) await child.stop();
});

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function sleeper(env: NodeJS.ProcessEnv = {}): SupervisedProcess {
  const child = new SupervisedProcess({
    name: 'sleeper',
    command: process.execPath,
    args: ['-e', SLEEPER],
    env,
    logger,
    backoff: { firstDelayMs: 250, maxDelayMs: 2000, stableMs: 30_000 },
    stopTimeoutMs: 2000,
  });
  supervised.push(child);
  return child;
}

describe('SupervisedProcess', () => {
  it('a SIGKILLed child is started again within 2 s, later deaths in a row wait longer', async () => {
    const child = sleeper();
    const deaths: number[] = [];
    child.events.on('died', ({ restartInMs }) => deaths.push(restartInMs));
    const ready: number[] = [];
    child.events.on('ready', (pid) => ready.push(pid));
    child.start();
    await expect.poll(() => ready.length).toBe(1);
    for (let round = 0; round < 3; round++) {
      const before = ready.length;
      const killedAt = Date.now();
      child.kill();
      await expect.poll(() => ready.length, { timeout: 5000 }).toBe(before + 1);
      // The first restart, as after an ordinary crash, is back within 2 s.
      if (round === 0) expect(Date.now() - killedAt).toBeLessThan(2000);
    }
    expect(deaths).toEqual([250, 500, 1000]);
    expect(new Set(ready).size).toBe(4);
  });

  it('stop() ends the child with SIGTERM and starts no other', async () => {
    const child = sleeper();
    child.start();
    await expect.poll(() => child.pid).toBeDefined();
    const pid = child.pid!;
    await child.stop();
    expect(alive(pid)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(child.pid).toBeUndefined();
  });

  it('a child that dies before it is ready three times in a row is given up with "failed"', async () => {
    const child = new SupervisedProcess({
      name: 'broken',
      command: '/nonexistent/binary',
      args: [],
      env: {},
      logger,
      backoff: { firstDelayMs: 50, maxDelayMs: 100, stableMs: 30_000 },
    });
    supervised.push(child);
    const failures: Error[] = [];
    const started: number[] = [];
    child.events.on('failed', (error) => failures.push(error));
    child.events.on('started', (pid) => started.push(pid));
    child.start();
    await expect.poll(() => failures.length, { timeout: 3000 }).toBe(1);
    expect(failures[0]!.message).toMatch(/failed to start 3 times in a row/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(started).toHaveLength(3);
    expect(child.pid).toBeUndefined();
  });

  it('the child dies with the process that supervises it, even when that one is SIGKILLed', async () => {
    const owner = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(here, 'support/supervise-sleeper.ts')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      owner.stdout!.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
      owner.once('exit', () => reject(new Error('the owner exited first')));
    });
    expect(alive(pid)).toBe(true);
    owner.kill('SIGKILL');
    await expect.poll(() => alive(pid), { timeout: 5000 }).toBe(false);
  });
});
