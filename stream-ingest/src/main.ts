// A standalone ingest node: `npm run ingest-node`. It takes RTMP(S) from streamers, transcodes
// and uploads their streams, and registers with the api at INGEST_API_URL, which decides who may
// publish. SIGTERM ends its streams cleanly (last segments, ENDLIST) and deregisters it.
import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import {
  READY_MESSAGE,
  connectControlSocket,
  createLogger,
  listenHttp,
  loadAllConfigs,
  runService,
  notFound,
  serveOpsEndpoint,
} from '@hearth/server-common';
import { loadIngestConfig, loadIngestNodeConfig, loadS3Config } from './config';
import { IngestAgent } from './ingest-agent';
import { IngestNode } from './ingest-node';
import { LocalStorage } from './storage/local-storage';
import { S3Storage } from './storage/s3-storage';

async function main(): Promise<{ onStop: (signal: NodeJS.Signals) => Promise<void> }> {
  const [ingestConfig, nodeConfig, s3Config] = loadAllConfigs(
    process.env,
    loadIngestConfig,
    loadIngestNodeConfig,
    loadS3Config,
  );
  const logger = createLogger('stream-ingest', { level: nodeConfig.logLevel }).child({
    node: nodeConfig.nodeId,
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const storage =
    ingestConfig.storage === 'local'
      ? new LocalStorage(ingestConfig.localStorageDir)
      : new S3Storage({ ...s3Config, region: s3Config.region, bucket: s3Config.bucket });
  const rtmpUrl =
    nodeConfig.publicRtmpUrl ??
    `rtmp://${ingestConfig.rtmpHost}:${ingestConfig.rtmpPort}/${ingestConfig.app}`;
  const agent = new IngestAgent({
    nodeId: nodeConfig.nodeId,
    rtmpUrl,
    limits: { maxStreams: nodeConfig.maxStreams },
    heartbeatMs: nodeConfig.heartbeatMs,
    logger,
  });
  const node = await IngestNode.start({
    config: ingestConfig,
    controlPlane: agent,
    storage,
    logger,
    registry,
  });
  agent.bind(node);
  const server = http.createServer((request, response) => {
    const ops = {
      registry,
      health: () => ({ node: nodeConfig.nodeId, streams: node.liveStreamIds.length }),
    };
    // The LL-HLS origin (`/live/...`, `/private/...`) for the CDN edge, then /metrics and /health.
    if (node.origin.handle(request, response)) return;
    if (!serveOpsEndpoint(request, response, ops)) notFound(response);
  });
  const httpPort = await listenHttp(server, nodeConfig.httpHost, nodeConfig.httpPort).catch(
    async (error: unknown) => {
      await node.stop();
      throw error;
    },
  );
  const origin = nodeConfig.originUrl ?? defaultOriginUrl(nodeConfig.httpHost, httpPort);
  if (origin) agent.advertiseOrigin(origin);
  const control = connectControlSocket({
    agent,
    apiUrl: nodeConfig.apiUrl,
    clusterSecret: nodeConfig.clusterSecret,
    logger,
  });
  logger.info({ rtmpPort: node.rtmp.port, httpPort, rtmpUrl }, 'ingest node listening');
  // Under a supervisor (the embedded profile), a child that got this far counts as started.
  process.send?.(READY_MESSAGE);

  const shutdown = async (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down: ending streams');
    setTimeout(() => process.exit(1), nodeConfig.stopTimeoutMs).unref();
    // New publishers are refused from here; open streams get their last segments and ENDLIST.
    await node.stop().catch((error: unknown) => logger.error({ err: error }, 'stop failed'));
    agent.deregister();
    control.close();
    server.closeAllConnections();
    server.close();
    process.exit(0);
  };
  return { onStop: shutdown };
}

runService(main);

// The node's own HTTP address as the edge would reach it; none for a wildcard address, which
// names no host (INGEST_ORIGIN_URL says where the edge finds the node then).
function defaultOriginUrl(host: string, port: number): string | undefined {
  if (host === '0.0.0.0' || host === '::') return undefined;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
