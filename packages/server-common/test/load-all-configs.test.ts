import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, loadAllConfigs, parseEnvConfig } from '@hearth/server-common';

const loadA = (env: Record<string, string | undefined>) =>
  parseEnvConfig(z.object({ port: z.coerce.number().int().default(1) }), env, 'A_', {
    A_PORT: 'port',
  });
const loadB = (env: Record<string, string | undefined>) =>
  parseEnvConfig(z.object({ name: z.string().default('b') }), env, 'B_', { B_NAME: 'name' });

describe('loadAllConfigs()', () => {
  it('returns every loader result in order', () => {
    expect(loadAllConfigs({ A_PORT: '8', B_NAME: 'x' }, loadA, loadB)).toEqual([
      { port: 8 },
      { name: 'x' },
    ]);
  });

  it('reports the problems of every loader in one ConfigError', () => {
    let error: unknown;
    try {
      loadAllConfigs({ A_PORT: 'soon', B_OTHER: '1' }, loadA, loadB);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(
      /^invalid configuration: .*port.*; B_OTHER: unknown setting$/,
    );
  });

  it('lets errors that are not configuration problems through', () => {
    const broken = () => {
      throw new TypeError('bug');
    };
    expect(() => loadAllConfigs({}, loadA, broken)).toThrow(TypeError);
  });
});
