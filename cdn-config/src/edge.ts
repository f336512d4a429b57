import fs from 'node:fs';
import { renderNginxEdgeConfig } from './nginx';
import { NGINX_BIN, NginxProcess } from './nginx-process';

/** Whether Debian's nginx is installed, so an edge can run on this machine. */
export function nginxAvailable(): boolean {
  return fs.existsSync(NGINX_BIN);
}

/** Starts nginx as the HLS caching edge in front of an S3 origin (and a live origin), on loopback. */
export function startNginxEdge(options: {
  /** Origin endpoint, e.g. `http://127.0.0.1:9000`. */
  originUrl: string;
  /** Bucket the edge maps paths into. */
  bucket: string;
  /** Port to listen on; a free one when omitted. */
  port?: number;
  /** Secret that signs private channels' playback paths; without it none are served. */
  playbackSigningSecret?: string;
  /** The LL-HLS origin (an ingest node's HTTP address); without it every object is S3's. */
  liveOriginUrl?: string;
  /** With several ingest nodes: the api that names each channel's origin, and its edge secret. */
  liveOriginResolver?: { apiUrl: string; edgeSecret: string };
  /** The secret the LL-HLS origins ask of the edge (their INGEST_EDGE_SECRET). */
  liveOriginSecret?: string | undefined;
}): Promise<NginxProcess> {
  return NginxProcess.start(
    (layout) =>
      renderNginxEdgeConfig({
        listenHost: '127.0.0.1',
        listenPort: layout.port,
        originUrl: options.originUrl,
        bucket: options.bucket,
        cacheDirectory: layout.cacheDirectory,
        pidFile: layout.pidFile,
        errorLogPath: layout.errorLogPath,
        accessLogPath: layout.accessLogPath,
        tempDirectory: layout.tempDirectory,
        workerProcesses: 1,
        playbackSigningSecret: options.playbackSigningSecret,
        liveOriginUrl: options.liveOriginUrl,
        liveOriginResolver: options.liveOriginResolver,
        liveOriginSecret: options.liveOriginSecret,
      }),
    { port: options.port },
  );
}
