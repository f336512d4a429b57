import type { z } from 'zod';
import { describeZodError } from '@hearth/protocol';

/** Thrown at start-up when settings are unknown or invalid; lists every problem at once. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Parses the environment variables with `prefix` against a schema, refusing unknown ones.
 * `keys` maps each variable name to the config field it sets; `othersKeys` names variables of
 * the same prefix that another settings group reads.
 */
export function parseEnvConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
  prefix: string,
  keys: Record<string, string>,
  othersKeys: Record<string, string> = {},
): z.infer<S> {
  const problems: string[] = [];
  const raw: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(prefix) || value === undefined || name in othersKeys) continue;
    const field = keys[name];
    if (field === undefined) problems.push(`${name}: unknown setting`);
    else raw[field] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) problems.push(describeZodError(parsed.error));
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  return parsed.data as z.infer<S>;
}

type EnvLoader = (env: Record<string, string | undefined>) => unknown;

/**
 * Runs every settings loader on the environment, so that all problems of all services are
 * reported together in one ConfigError rather than one per start attempt.
 */
export function loadAllConfigs<L extends readonly EnvLoader[]>(
  env: Record<string, string | undefined>,
  ...loaders: L
): { [K in keyof L]: ReturnType<L[K]> } {
  const problems: string[] = [];
  const results = loaders.map((load) => {
    try {
      return load(env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(error.message.replace(/^invalid configuration: /, ''));
      return undefined;
    }
  });
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  return results as { [K in keyof L]: ReturnType<L[K]> };
}
