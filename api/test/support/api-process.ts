// One api instance in a process of its own, for tests that kill it with SIGKILL:
// `node --import tsx api/test/support/api-process.ts`. It runs the embedded voice node on the
// PostgreSQL database and port named by HEARTH_TEST_* variables, and prints one JSON line,
// `{"baseUrl":...}`, once it listens. SIGTERM stops it cleanly.
import { z } from 'zod';
import { PostgresClient } from '../../src/db/postgres-client';
import { startTestApi } from './server';

/** What the test hands the process, parsed like any input from another process. */
const settingsSchema = z.object({
  HEARTH_TEST_DATABASE_URL: z.string().regex(/^postgres:\/\//),
  HEARTH_TEST_PORT: z.coerce.number().int().min(1).max(65535),
  HEARTH_TEST_CLUSTER_SECRET: z.string().min(32),
  HEARTH_TEST_ADMIN_TOKEN: z.string().min(32),
  HEARTH_TEST_NODE_TIMEOUT_MS: z.coerce.number().int().min(100),
});

const settings = settingsSchema.parse(process.env);
const api = await startTestApi({
  port: settings.HEARTH_TEST_PORT,
  api: {
    embeddedVoice: 'true',
    clusterSecret: settings.HEARTH_TEST_CLUSTER_SECRET,
    adminToken: settings.HEARTH_TEST_ADMIN_TOKEN,
    nodeTimeoutMs: String(settings.HEARTH_TEST_NODE_TIMEOUT_MS),
    sweepIntervalMs: String(Math.floor(settings.HEARTH_TEST_NODE_TIMEOUT_MS / 5)),
  },
  database: new PostgresClient(settings.HEARTH_TEST_DATABASE_URL, () => undefined),
});
process.stdout.write(`${JSON.stringify({ baseUrl: api.baseUrl })}\n`);
process.once('SIGTERM', () => {
  void api.close().finally(() => process.exit(0));
});
