// Vite for devapp's frontend. `stagecraft dev` runs `npm run dev` with:
//   PORT                the port to listen on, on HOST (strict: never another one)
//   HOST                127.0.0.1
//   STAGECRAFT_DEV_URL  the page's public URL through the dev Traefik, e.g.
//                       https://app.localhost:8443: the browser opens the HMR
//                       websocket there (wss, that host and port), not on PORT.
// Without them (plain `npm run dev`) Vite serves http://127.0.0.1:5173/ as usual.
import { defineConfig } from 'vite';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 5173);
const publicUrl = process.env.STAGECRAFT_DEV_URL ? new URL(process.env.STAGECRAFT_DEV_URL) : null;

function publicPort(url) {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

export default defineConfig({
  server: {
    host,
    port,
    strictPort: true,
    // Requests come through Traefik with the route's Host header.
    allowedHosts: publicUrl ? [publicUrl.hostname] : [],
    hmr: publicUrl
      ? {
          protocol: publicUrl.protocol === 'https:' ? 'wss' : 'ws',
          host: publicUrl.hostname,
          clientPort: publicPort(publicUrl),
        }
      : true,
  },
});
