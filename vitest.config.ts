import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'voice-sfu/test/**/*.test.ts',
      'stream-ingest/test/**/*.test.ts',
      'cdn-config/test/**/*.test.ts',
      'api/test/**/*.test.ts',
      'e2e/**/*.test.ts',
      'web/src/**/*.test.ts',
    ],
    // Test files share two cores with real mediasoup workers and Chromium; running them one at a
    // time keeps timings honest and avoids starving media threads.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
