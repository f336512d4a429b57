/** Runs async tasks one after another, so get-or-create style steps never interleave. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Queues a task and resolves with its result once every earlier task has settled. */
  push<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(task, task);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
