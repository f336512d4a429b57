import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SupervisedProcess, type Logger } from '@hearth/server-common';

const INGEST_MAIN = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../stream-ingest/src/main.ts',
);

/**
 * The embedded profile's ingest node: `stream-ingest/src/main.ts` as a supervised child process,
 * so that nothing an RTMP peer does can reach the api's process. It registers with this api over
 * the control socket like any ingest node; a crash restarts it within 2 s, and it dies with the
 * api. The cluster secret and storage credentials travel in its environment, never its argv.
 */
export function superviseIngestNode(options: {
  /** The api's own base URL, where the node registers. */
  apiUrl: string;
  clusterSecret: string;
  /** URL streamers push to, as the node should advertise it. */
  rtmpUrl: string;
  /** `S3_*` settings of the storage it writes to. */
  storageEnv: Record<string, string>;
  /** Its HTTP port on loopback: metrics, and the LL-HLS origin for the CDN edge. */
  httpPort: number;
  /** The secret the CDN edge sends its origin requests with (INGEST_EDGE_SECRET). */
  edgeSecret: string | undefined;
  logger: Logger;
}): SupervisedProcess {
  const child = new SupervisedProcess({
    name: 'ingest node',
    command: process.execPath,
    args: ['--import', 'tsx', INGEST_MAIN],
    env: {
      ...process.env,
      ...options.storageEnv,
      INGEST_API_URL: options.apiUrl,
      INGEST_CLUSTER_SECRET: options.clusterSecret,
      INGEST_PUBLIC_RTMP_URL: options.rtmpUrl,
      INGEST_HTTP_HOST: '127.0.0.1',
      INGEST_HTTP_PORT: String(options.httpPort),
      ...(options.edgeSecret ? { INGEST_EDGE_SECRET: options.edgeSecret } : {}),
    },
    logger: options.logger,
  });
  child.start();
  return child;
}
