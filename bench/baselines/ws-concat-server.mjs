// Baseline: the live-audio receiver most projects write — a `ws` server that grows a Buffer with
// Buffer.concat on every frame and writes each 2 s chunk (WAV, as received: 48 kHz stereo) with
// fs.writeFile. Driven over IPC by bench/live-streams.mjs.
// argv: <directory>
import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { loopLag, percentile } from '../lib/proc.mjs';

const dir = process.argv[2];
const CHUNK_BYTES = 48000 * 2 * 2 * 2; // 2 s of 48 kHz stereo s16le
const lag = loopLag();
const stored = new Map(); // trackId → bytes of PCM written
const latencies = [];
let open = 0;
let closed = 0;

function wavHeader(dataBytes) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0); h.writeUInt32LE(36 + dataBytes, 4); h.write('WAVE', 8); h.write('fmt ', 12);
  h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(2, 22); h.writeUInt32LE(48000, 24);
  h.writeUInt32LE(48000 * 4, 28); h.writeUInt16LE(4, 32); h.writeUInt16LE(16, 34); h.write('data', 36); h.writeUInt32LE(dataBytes, 40);
  return h;
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const trackId = new URL(req.url, 'http://x').searchParams.get('trackId');
  open++;
  stored.set(trackId, 0);
  mkdirSync(join(dir, trackId), { recursive: true });
  let buf = Buffer.alloc(0);
  let seq = 0;
  const flush = (chunk) => {
    const lastFrameAt = performance.now();
    const name = join(dir, trackId, `${String(seq++).padStart(6, '0')}.wav`);
    writeFile(name, Buffer.concat([wavHeader(chunk.length), chunk])).then(() => {
      latencies.push(performance.now() - lastFrameAt);
      stored.set(trackId, stored.get(trackId) + chunk.length);
    });
  };
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return;
    buf = Buffer.concat([buf, data]);
    if (buf.length >= CHUNK_BYTES) {
      flush(buf.subarray(0, CHUNK_BYTES));
      buf = buf.subarray(CHUNK_BYTES);
    }
  });
  ws.on('close', () => {
    open--;
    closed++;
    if (buf.length > 0) flush(buf);
  });
});

wss.on('listening', () => process.send({ type: 'listening', port: wss.address().port }));
process.on('message', (msg) => {
  if (msg === 'reset') lag.reset();
  if (msg === 'stats') process.send({ type: 'stats', open, closed, lagP99Ms: lag.p99Ms(), latencyP99Ms: percentile(latencies, 99), chunks: latencies.length, stored: Object.fromEntries(stored) });
  if (msg === 'stop') process.exit(0);
});
