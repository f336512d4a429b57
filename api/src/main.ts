import { Registry, collectDefaultMetrics } from 'prom-client';
import { ConfigError, createLogger } from '@hearth/server-common';
import { loadVoiceConfig } from '@hearth/voice-sfu';
import { loadApiConfig } from './config';
import { startPlatform } from './platform';

async function main(): Promise<void> {
  const config = loadApiConfig(process.env);
  const voiceConfig = loadVoiceConfig(process.env);
  const logger = createLogger('api', { level: config.logLevel });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const { app, voice } = await startPlatform({ config, voiceConfig, logger, registry });
  const server = app.listen(config.port, config.host);
  server.once('listening', () => {
    const base = `http://${config.host}:${config.port}`;
    logger.info({ url: base, profile: config.profile }, 'listening');
    process.stdout.write(
      `\nHearth is running (${config.profile} profile).\n` +
        `  Web app:        ${base}/\n` +
        `  Join by link:   ${base}/voice/lobby?name=Alice&autojoin=1\n` +
        `  REST API:       ${base}/api/channels\n` +
        `  Metrics:        ${base}/metrics\n\n`,
    );
  });
  server.once('error', (error) => {
    logger.fatal({ err: error }, 'http server failed');
    voice.close();
    process.exit(1);
  });
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    voice.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof ConfigError ? `${error.message}\n` : `start-up failed: ${String(error)}\n`,
  );
  process.exit(1);
});
