import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';

const README = path.join(path.dirname(fileURLToPath(import.meta.url)), '../README.md');

/**
 * Replaces the README's `<!-- bench:<name> -->` … `<!-- /bench:<name> -->` section with
 * `markdown`. Only the marked section changes; the prose around it is written by hand. The README
 * is then formatted like every other file, so the check in `npm test` stays green.
 */
export async function replaceReadmeSection(name: string, markdown: string): Promise<void> {
  const readme = fs.readFileSync(README, 'utf8');
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const start = readme.indexOf(open);
  const end = readme.indexOf(close);
  if (start < 0 || end < start) {
    console.warn(`README.md has no ${open} … ${close} section; left as it is`);
    return;
  }
  const updated = `${readme.slice(0, start + open.length)}\n\n${markdown}\n\n${readme.slice(end)}`;
  fs.writeFileSync(README, await prettier.format(updated, { filepath: README }));
  console.log(`README.md: the bench:${name} section replaced`);
}
