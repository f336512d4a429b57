// The nginx-rtmp rows: Debian's nginx with libnginx-mod-rtmp, HLS on, serving its own fragments
// over HTTP. It repackages the source into MPEG-TS without a ladder, and cuts a fragment only at a
// key frame, so each row's source has key frames as often as its fragments.
import type { Browser } from 'playwright-core';
import { NginxProcess, freePort } from '@hearth/cdn-config';
import { measureRow, type PlaybackWindow, type RowMeasurement } from './latency';
import { pushSource, type Source } from './sources';

// Seconds of media each playlist lists, as Hearth's live playlists list about.
const PLAYLIST_SECONDS = 6;

/** Publishes `source` to a fresh nginx-rtmp with `fragmentSeconds` fragments and measures it. */
export async function runNginxRtmp(options: {
  browser: Browser;
  playerUrl: string;
  source: Source;
  fragmentSeconds: number;
  timing: PlaybackWindow;
}): Promise<RowMeasurement> {
  const { browser, playerUrl, source, fragmentSeconds, timing } = options;
  const rtmpPort = await freePort();
  const nginx = await NginxProcess.start(
    (layout) => `
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
pid ${layout.pidFile};
error_log ${layout.errorLogPath} warn;
events { worker_connections 256; }
rtmp {
  server {
    listen 127.0.0.1:${rtmpPort};
    application live {
      live on;
      record off;
      hls on;
      hls_path ${layout.prefix}/hls;
      hls_fragment ${fragmentSeconds}s;
      hls_playlist_length ${PLAYLIST_SECONDS}s;
    }
  }
}
http {
  access_log off;
  client_body_temp_path ${layout.tempDirectory}/client;
  proxy_temp_path ${layout.tempDirectory}/proxy;
  fastcgi_temp_path ${layout.tempDirectory}/fastcgi;
  uwsgi_temp_path ${layout.tempDirectory}/uwsgi;
  scgi_temp_path ${layout.tempDirectory}/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:${layout.port};
    location /hls/ {
      root ${layout.prefix};
      add_header Cache-Control no-cache;
      add_header Access-Control-Allow-Origin *;
    }
  }
}
`,
  );
  try {
    return await measureRow({
      browser,
      playerUrl,
      playlistUrl: `${nginx.url}/hls/bench.m3u8`,
      parts: false,
      timing,
      publish: () => pushSource(source, `rtmp://127.0.0.1:${rtmpPort}/live/bench`),
    });
  } finally {
    await nginx.stop();
  }
}
