import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// The api serves the built app, REST and signaling on one origin. In development Vite serves the
// app and forwards everything else to a local api, so the app's same-origin URLs work unchanged.
const API_ORIGIN = 'http://127.0.0.1:8080';

/** Build and dev-server settings of the web app. */
export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // hls.js alone is about 600 kB minified. It loads only with the watch page, which is what
    // the warning's advice would achieve, so the limit sits just above it.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      '/api': { target: API_ORIGIN },
      '/metrics': { target: API_ORIGIN },
      '/ws': { target: API_ORIGIN, ws: true },
    },
  },
});
