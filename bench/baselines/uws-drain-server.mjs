// Raw limit: a uWebSockets.js server that only counts the bytes of each stream (no audio work,
// no storage). Driven over IPC by bench/live-streams.mjs.
import { createRequire } from 'node:module';
import { loopLag } from '../lib/proc.mjs';

const uWS = createRequire(import.meta.url)('uWebSockets.js');
const lag = loopLag();
const stored = new Map(); // trackId → bytes received
let open = 0;
let closed = 0;

const app = uWS.App().ws('/*', {
  maxPayloadLength: 64 * 1024,
  idleTimeout: 120,
  upgrade: (res, req, context) => {
    const trackId = new URLSearchParams(req.getQuery() ?? '').get('trackId');
    res.upgrade({ trackId, bytes: 0 }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  open: () => { open++; },
  message: (ws, message, isBinary) => {
    if (isBinary) ws.getUserData().bytes += message.byteLength;
  },
  close: (ws) => {
    open--;
    closed++;
    const d = ws.getUserData();
    stored.set(d.trackId, d.bytes);
  },
});
app.listen('127.0.0.1', 0, (token) => process.send({ type: 'listening', port: uWS.us_socket_local_port(token) }));
process.on('message', (msg) => {
  if (msg === 'reset') lag.reset();
  if (msg === 'stats') process.send({ type: 'stats', open, closed, lagP99Ms: lag.p99Ms(), latencyP99Ms: null, chunks: 0, stored: Object.fromEntries(stored) });
  if (msg === 'stop') process.exit(0);
});
