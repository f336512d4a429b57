// The UDP impairment relays of a call, run in their own process (relay-process.ts): one relay
// per voice-node worker port, each listening on the announced address at the port the worker
// listens on, all set alike.
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImpairmentPatch } from '../../e2e/support/impairment';

/** What the relay process is started with. */
export interface RelayProcessConfig {
  /** Where the relays listen (the address the voice node announces). */
  listenHost: string;
  /** Where they forward to (the address the voice node listens on). */
  targetHost: string;
  /** One relay per port, listening and forwarding on the same port number. */
  ports: number[];
  /** Relay i seeds its random impairments with seed + i. */
  seed: number;
}

/** A request to the relay process. */
export type RelayRequest =
  | { type: 'set'; id: number; patch: ImpairmentPatch }
  | { type: 'stats'; id: number }
  | { type: 'close' };

/** A message from the relay process. */
export type RelayReply =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | {
      type: 'reply';
      id: number;
      /** Wall-clock time the request was handled (a `set` took effect), in ms. */
      at: number;
      /** Packets forwarded and dropped so far, over relays and directions. */
      forwarded: number;
      dropped: number;
      /** The relay process's longest event-loop delay since the last `set`, in ms. */
      loopDelayMaxMs: number;
    };

/** The answer to a `set` or `stats` request. */
export type RelayStatus = Extract<RelayReply, { type: 'reply' }>;

const here = path.dirname(fileURLToPath(import.meta.url));
// The relays stand for the network, which does not stall when this machine is busy: their
// process runs at a higher priority where allowed (root). It forwards a few hundred packets a
// second, so it takes next to nothing from anything else.
const RELAY_NICE = -10;

/** The relays of one call, in their own process. */
export class RelayGroup {
  readonly #child: ChildProcess;
  /** The relay process's nice value: `RELAY_NICE` when raising its priority was allowed, else 0. */
  readonly nice: number;
  readonly #waiting = new Map<
    number,
    { resolve: (reply: RelayStatus) => void; reject: (error: Error) => void }
  >();
  #nextId = 1;

  private constructor(child: ChildProcess, nice: number) {
    this.#child = child;
    this.nice = nice;
    child.on('message', (reply: RelayReply) => {
      if (reply.type !== 'reply') return;
      this.#waiting.get(reply.id)?.resolve(reply);
      this.#waiting.delete(reply.id);
    });
    child.once('exit', (code) => {
      for (const { reject } of this.#waiting.values()) {
        reject(new Error(`the relay process exited with ${code}`));
      }
      this.#waiting.clear();
    });
  }

  /** Forks the relay process and resolves once every relay listens. */
  static async start(config: RelayProcessConfig): Promise<RelayGroup> {
    const child = fork(path.join(here, 'relay-process.ts'), [JSON.stringify(config)]);
    await new Promise<void>((resolve, reject) => {
      child.on('message', (reply: RelayReply) => {
        if (reply.type === 'ready') resolve();
        else if (reply.type === 'failed') reject(new Error(`relays: ${reply.message}`));
      });
      child.once('exit', (code) => reject(new Error(`the relay process exited with ${code}`)));
    });
    let nice = 0;
    try {
      os.setPriority(child.pid!, RELAY_NICE);
      nice = RELAY_NICE;
    } catch {
      // Not root: the relays run at the default priority, and their stalls show in the report.
    }
    return new RelayGroup(child, nice);
  }

  /** Changes every relay's impairment; resolves with the relay process's status once it did. */
  set(patch: ImpairmentPatch): Promise<RelayStatus> {
    return this.#request((id) => ({ type: 'set', id, patch }));
  }

  /** The relays' counters. */
  stats(): Promise<RelayStatus> {
    return this.#request((id) => ({ type: 'stats', id }));
  }

  /** Stops the relay process and waits for it to exit. */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.send({ type: 'close' } satisfies RelayRequest);
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  #request(make: (id: number) => RelayRequest): Promise<RelayStatus> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (!this.#child.connected) {
        reject(new Error('the relay process is gone'));
        return;
      }
      this.#waiting.set(id, { resolve, reject });
      this.#child.send(make(id));
    });
  }
}
