// The analysis endpoint of bench/chunk-path.mjs, in a process of its own so that its reading of
// every chunk body (250 × 192 KiB a second at N = 500) does not share an event loop with the
// bench's measurements: reads each body, answers 200, counts.
// IPC: sends { port } once listening; on { stats: true } answers { requests, bytes, cpuSec, lagP99Ms }
// (CPU and event-loop lag since the last stats request).
import http from 'node:http';
import { cpuSeconds, loopLag } from './proc.mjs';

let requests = 0;
let bytes = 0;
const lag = loopLag();
let cpu0 = cpuSeconds(process.pid);
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => (n += c.length));
  req.on('end', () => {
    requests++;
    bytes += n;
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (msg) => {
  if (!msg?.stats) return;
  const cpu = cpuSeconds(process.pid);
  process.send({ requests, bytes, cpuSec: cpu - cpu0, lagP99Ms: lag.p99Ms() });
  cpu0 = cpu;
  lag.reset();
});
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
