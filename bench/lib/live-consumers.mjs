// The consumers of bench/live-out.mjs on a thread of their own, so that N senders and N
// consumers do not share one event loop (at N = 200 one thread could not keep up with both).
// workerData: { wsBase, apiKey, rate, ids: [recordingId per stream], sentAt: SharedArrayBuffer, maxFrames }.
// Messages in: 'measure' | 'pause' | 'stop'; out: { type: 'open' } once every socket is open,
// { type: 'refused', i, status, body }, and on stop { type: 'done', e2e, problems, closedEarly }.
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const { wsBase, apiKey, rate, ids, maxFrames } = workerData;
const sentAt = new Float64Array(workerData.sentAt);
const e2e = [];
let problems = 0;
let closedEarly = 0;
let measuring = false;
let stopping = false;
const sockets = [];
const opened = [];
ids.forEach((id, i) => {
  const ws = new WebSocket(`${wsBase}/v1/live?recordingId=${id}&rate=${rate}`, { headers: { apikey: apiKey }, perMessageDeflate: false });
  let next;
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return;
    const offset = Number(data.readBigUInt64LE(4));
    const n = (data.length - 12) / 2;
    if (next !== undefined && next !== offset) problems++;
    next = offset + n;
    if (!measuring) return;
    // the egress frame whose arrival let the daemon send this message's last sample
    const k = Math.floor(((offset + n) * 48000) / rate / 480) - 1;
    const at = k >= 0 && k < maxFrames ? sentAt[i * maxFrames + k] : 0;
    if (at > 0) e2e.push(performance.timeOrigin + performance.now() - at);
  });
  ws.on('close', () => {
    if (!stopping) closedEarly++;
  });
  ws.on('error', () => undefined);
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => parentPort.postMessage({ type: 'refused', i, status: res.statusCode, body }));
  });
  sockets.push(ws);
  opened.push(new Promise((resolve) => ws.once('open', resolve)));
});
void Promise.all(opened).then(() => parentPort.postMessage({ type: 'open' }));
parentPort.on('message', (m) => {
  if (m === 'measure') measuring = true;
  else if (m === 'pause') {
    // measuring is over: the closes that follow (the streams end) are expected
    measuring = false;
    stopping = true;
  }
  else if (m === 'stop') {
    stopping = true;
    for (const ws of sockets) ws.terminate();
    parentPort.postMessage({ type: 'done', e2e, problems, closedEarly });
  }
});
