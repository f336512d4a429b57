import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';
import {
  createLogger,
  loadAllConfigs,
  runService,
  type SupervisedProcess,
} from '@hearth/server-common';
import { loadIngestConfig, loadS3Config } from '@hearth/stream-ingest';
import { loadVoiceConfig } from '@hearth/voice-sfu';
import { loadApiConfig } from './config';
import { superviseIngestNode } from './ingest-child';
import { startMediaBackends } from './media-backends';
import { startMetricsListener, type MetricsListener } from './metrics-endpoint';
import { resolveClusterSecret } from './nodes/config';
import { startPlatform } from './platform';
import { EmbeddedTurn } from './turn/embedded-turn';
import {
  EDGE_SECRET_FILE,
  JWT_SECRET_FILE,
  PLAYBACK_SIGNING_SECRET_FILE,
  readOrCreateSecret,
  writeAdminToken,
} from './secret-files';

async function main(): Promise<{ onStop: (signal: NodeJS.Signals) => Promise<void> }> {
  // Every service's settings are read before anything starts.
  const [loaded, voiceConfig, ingestConfig, s3Config] = loadAllConfigs(
    process.env,
    loadApiConfig,
    loadVoiceConfig,
    loadIngestConfig,
    loadS3Config,
  );
  // The embedded profile hands the operator token to the admin CLI through the data folder, and
  // keeps its JWT signing and cluster secrets there (production refuses to start without them).
  const embedded = loaded.profile === 'embedded';
  const config = {
    ...loaded,
    adminToken:
      embedded && loaded.adminToken === undefined
        ? writeAdminToken(loaded.dataDir)
        : loaded.adminToken,
    jwtSecret:
      embedded && loaded.jwtSecret === undefined
        ? readOrCreateSecret(loaded.dataDir, JWT_SECRET_FILE)
        : loaded.jwtSecret,
    // The embedded nginx edge and the api share it, and signed URLs outlive a restart.
    playbackSigningSecret:
      embedded && loaded.playbackSigningSecret === undefined
        ? readOrCreateSecret(loaded.dataDir, PLAYBACK_SIGNING_SECRET_FILE)
        : loaded.playbackSigningSecret,
    // What the embedded nginx edge shows the embedded ingest node's LL-HLS origin.
    edgeSecret:
      embedded && loaded.edgeSecret === undefined
        ? readOrCreateSecret(loaded.dataDir, EDGE_SECRET_FILE)
        : loaded.edgeSecret,
    // Voice nodes started on this machine read the embedded profile's secret from the data folder.
    clusterSecret: resolveClusterSecret({ ...loaded, clusterSecret: loaded.clusterSecret }),
  };
  const logger = createLogger('api', { level: config.logLevel });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // The embedded coturn's URLs and secret stand in for API_TURN_URLS and API_TURN_SECRET.
  const turn = config.embeddedTurn
    ? await EmbeddedTurn.start({ port: config.embeddedTurnPort, logger })
    : undefined;
  const platformConfig = turn
    ? { ...config, turnUrls: [...turn.urls], turnSecret: turn.secret }
    : config;
  const media = await startMediaBackends({
    config,
    ingest: ingestConfig,
    s3: s3Config,
    logger,
  }).catch(async (error: unknown) => {
    await turn?.stop();
    throw error;
  });
  const rtmpUrl =
    config.rtmpUrl ??
    `rtmp://${ingestConfig.rtmpHost}:${ingestConfig.rtmpPort}/${ingestConfig.app}`;
  const platform = await startPlatform({
    config: platformConfig,
    voiceConfig,
    logger,
    registry,
    streamUrls: { rtmpUrl, playbackBaseUrl: media.playbackBaseUrl },
  }).catch(async (error: unknown) => {
    await media.close();
    await turn?.stop();
    throw error;
  });
  let metrics: MetricsListener | undefined;
  if (config.metricsPort !== undefined) {
    metrics = await startMetricsListener({
      registry,
      host: config.metricsHost,
      port: config.metricsPort,
    }).catch(async (error: unknown) => {
      await platform.close();
      await media.close();
      await turn?.stop();
      throw error;
    });
  }
  const server = platform.app.listen(config.port, config.host);
  let ingestNode: SupervisedProcess | undefined;
  server.once('listening', () => {
    const base = `http://${config.host}:${config.port}`;
    if (config.embeddedIngest) {
      const { port } = server.address() as AddressInfo;
      ingestNode = superviseIngestNode({
        apiUrl: `http://${loopbackFor(config.host)}:${port}`,
        clusterSecret: config.clusterSecret,
        rtmpUrl,
        storageEnv: media.ingestEnv,
        httpPort: config.embeddedIngestHttpPort,
        edgeSecret: config.edgeSecret,
        logger,
      });
    }
    logger.info({ url: base, profile: config.profile }, 'listening');
    process.stdout.write(
      `\nHearth is running (${config.profile} profile).\n` +
        `  Web app:        ${base}/\n` +
        `  Join by link:   ${base}/voice/lobby?name=Alice&autojoin=1\n` +
        `  RTMP ingest:    ${rtmpUrl}   (stream key: npm run cli -- stream-key create <channel>)\n` +
        `  HLS playback:   ${media.playbackBaseUrl}/live/<channel>/master.m3u8\n` +
        `  Media:          ${media.description}\n` +
        `  TURN:           ${turnWhere(platformConfig)}\n` +
        `  REST API:       ${base}/api/channels\n` +
        `  Metrics:        ${metricsWhere(config, base, metrics)}\n\n`,
    );
  });
  let stopping = false;
  const shutdown = async (signal: string, code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    setTimeout(() => process.exit(code), 10_000).unref();
    server.close();
    await metrics?.close();
    // The ingest node ends its streams (ENDLIST) and deregisters while the api still listens.
    await ingestNode?.stop();
    await platform.close().catch((error: unknown) => logger.error({ err: error }, 'close failed'));
    await media.close();
    await turn?.stop();
    process.exit(code);
  };
  server.once('error', (error) => {
    logger.fatal({ err: error }, 'http server failed');
    void shutdown('error', 1);
  });
  return { onStop: (signal) => shutdown(signal, 0) };
}

// Where /metrics can be read, for the start-up banner.
function metricsWhere(
  config: { profile: string; metricsToken?: string | undefined; metricsHost: string },
  base: string,
  listener: MetricsListener | undefined,
): string {
  const places = [];
  if (listener) places.push(`http://${config.metricsHost}:${listener.port}/metrics`);
  if (config.metricsToken !== undefined) places.push(`${base}/metrics (Bearer API_METRICS_TOKEN)`);
  else if (config.profile === 'embedded') places.push(`${base}/metrics`);
  return places.join(', ') || 'not served (set API_METRICS_PORT or API_METRICS_TOKEN)';
}

// Which TURN servers voice clients are given, for the start-up banner.
function turnWhere(config: { turnUrls: string[]; turnTtlSeconds: number }): string {
  if (config.turnUrls.length === 0) return 'none (set API_TURN_URLS, or install coturn)';
  return `${config.turnUrls.join(', ')} (credentials valid ${config.turnTtlSeconds} s)`;
}

function loopbackFor(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}

runService(main);
