import { defineConfig } from 'vitest/config';

/**
 * Unit tests of the web app's logic, beside the files they test. They run in Node: what they
 * cover takes its browser parts (players, WebRTC) as fakes at the boundary.
 */
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
