import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  StorageError,
  isTransientSystemError,
  type ObjectBody,
  type ObjectMeta,
  type ObjectStorage,
  type StoredObject,
} from './object-storage';

// Temporary files are hidden (leading dot) and carry a UUID, so `list()` can leave them out and
// two writers of one key never share a temporary file.
const TEMP_FILE = /^\..+\.[0-9a-f-]{36}\.tmp$/;

function storageError(error: unknown, key: string | undefined): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError(`local storage${key === undefined ? '' : ` (${key})`}: ${message}`, {
    transient: isTransientSystemError(error),
    key,
    cause: error,
  });
}

/**
 * Object storage in a local folder, for the local-disk provider, where a web server serves the
 * folder. Writes are atomic: a temporary file in the target folder is renamed over the key, so a
 * reader sees the old or the new object, never a partial one. Content-Type and Cache-Control are
 * not stored: the web server derives both from the file suffix through the same cache-rule table
 * (`@hearth/cdn-config`), and a sidecar file would itself be served and listed.
 */
export class LocalStorage implements ObjectStorage {
  readonly #root: string;

  constructor(root: string) {
    this.#root = path.resolve(root);
  }

  /** Writes one object through a temporary file and a rename; `meta` is not stored. */
  async put(key: string, body: ObjectBody, _meta: ObjectMeta): Promise<void> {
    const target = this.#pathOf(key);
    const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`);
    try {
      await mkdir(path.dirname(target), { recursive: true });
      if (typeof body === 'string' || Buffer.isBuffer(body)) await writeFile(temp, body);
      else await copyFile(body.filePath, temp);
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw storageError(error, key);
    }
  }

  /** Removes the files of the keys; missing ones are ignored. */
  async deleteMany(keys: readonly string[]): Promise<void> {
    const paths = keys.map((key) => this.#pathOf(key));
    try {
      await Promise.all(paths.map((file) => rm(file, { force: true })));
    } catch (error) {
      throw storageError(error, undefined);
    }
  }

  /** Reads one object; its metadata is undefined because none is stored. */
  async get(key: string): Promise<StoredObject | undefined> {
    const file = this.#pathOf(key);
    try {
      return { body: await readFile(file), contentType: undefined, cacheControl: undefined };
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') return undefined;
      throw storageError(error, key);
    }
  }

  /** Lists the keys under a prefix, leaving out temporary files of writes in progress. */
  async list(prefix: string): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.#root, { recursive: true, withFileTypes: true });
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') return [];
      throw storageError(error, undefined);
    }
    return entries
      .filter((entry) => entry.isFile() && !TEMP_FILE.test(entry.name))
      .map((entry) =>
        path
          .relative(this.#root, path.join(entry.parentPath, entry.name))
          .split(path.sep)
          .join('/'),
      )
      .filter((key) => key.startsWith(prefix))
      .sort();
  }

  // Keys are `/`-separated relative paths; anything that could leave the root is refused.
  #pathOf(key: string): string {
    const parts = key.split('/');
    if (
      key.includes('\\') ||
      key.includes('\0') ||
      parts.some((part) => part === '' || part === '.' || part === '..')
    ) {
      throw new StorageError(`invalid object key for local storage: ${JSON.stringify(key)}`, {
        transient: false,
        key,
      });
    }
    return path.join(this.#root, ...parts);
  }
}
