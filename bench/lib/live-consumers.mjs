// The consumers of bench/live-out.mjs on a thread of their own, so that N senders and N
// consumers do not share one event loop (at N = 200 one thread could not keep up with both).
// workerData: { wsBase, apiKey, rate, ids: [recordingId per stream], sentAt: SharedArrayBuffer,
// sentCount: SharedArrayBuffer (Int32 frames sent per stream), maxFrames, edgeMarginMs }.
// Messages in: 'measure' | 'pause' | 'drop' | 'reconnect' | 'stop'; out: { type: 'open' } once every
// socket is open (again, after 'reconnect'), { type: 'refused', i, status, body }, { type: 'dropped' },
// { type: 'caught-up', ms: [per consumer], unfinished } once every reconnected consumer reached the
// live edge, and on stop { type: 'done', e2e, problems, closedEarly, resumeProblems }.
//
// 'drop' cuts every socket at once (a network blip: terminate, no close handshake) and keeps
// each consumer's next offset; 'reconnect' opens them again with from=<that offset>, checks that
// the first audio starts exactly there (resumeProblems counts those that do not) and that the
// offsets stay contiguous, and times each consumer until its audio reaches the live edge (what the
// egress generator has sent, less edgeMarginMs).
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const { wsBase, apiKey, rate, ids, maxFrames } = workerData;
const sentAt = new Float64Array(workerData.sentAt);
const sentCount = new Int32Array(workerData.sentCount);
const marginSamples = Math.round((rate * (workerData.edgeMarginMs ?? 100)) / 1000);
const e2e = [];
let problems = 0;
let resumeProblems = 0;
let closedEarly = 0;
let measuring = false;
let stopping = false;
/** Per consumer: its socket, the next offset it expects, and its catch-up state. */
const consumers = ids.map(() => ({ ws: undefined, next: undefined, resumedAt: undefined, caughtMs: undefined }));
let catching = 0;
let reconnectT0 = 0;

function connect(i, from) {
  const c = consumers[i];
  const query = `recordingId=${ids[i]}&rate=${rate}${from === undefined ? '' : `&from=${from}`}`;
  const ws = new WebSocket(`${wsBase}/v1/live?${query}`, { headers: { apikey: apiKey }, perMessageDeflate: false });
  c.ws = ws;
  let first = from !== undefined;
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return;
    const offset = Number(data.readBigUInt64LE(4));
    const n = (data.length - 12) / 2;
    if (first) {
      first = false;
      if (offset !== from) resumeProblems++;
    } else if (c.next !== undefined && c.next !== offset) problems++;
    c.next = offset + n;
    if (c.resumedAt !== undefined && c.caughtMs === undefined) {
      const edge = Math.floor((sentCount[i] * 480 * rate) / 48000) - marginSamples;
      if (c.next >= edge) {
        c.caughtMs = performance.now() - c.resumedAt;
        if (--catching === 0) parentPort.postMessage({ type: 'caught-up', ms: consumers.map((x) => x.caughtMs), unfinished: 0 });
      }
    }
    if (!measuring) return;
    // the egress frame whose arrival let the daemon send this message's last sample
    const k = Math.floor(((offset + n) * 48000) / rate / 480) - 1;
    const at = k >= 0 && k < maxFrames ? sentAt[i * maxFrames + k] : 0;
    if (at > 0) e2e.push(performance.timeOrigin + performance.now() - at);
  });
  ws.on('close', () => {
    if (!stopping && c.ws === ws) closedEarly++;
  });
  ws.on('error', () => undefined);
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => parentPort.postMessage({ type: 'refused', i, status: res.statusCode, body }));
  });
  return new Promise((resolve) => ws.once('open', resolve));
}

function openAll(from) {
  void Promise.all(consumers.map((c, i) => connect(i, from ? c.next : undefined))).then(() => parentPort.postMessage({ type: 'open' }));
}

openAll(false);
parentPort.on('message', (m) => {
  if (m === 'measure') measuring = true;
  else if (m === 'pause') measuring = false;
  else if (m === 'drop') {
    for (const c of consumers) {
      const ws = c.ws;
      c.ws = undefined;
      ws.terminate();
    }
    parentPort.postMessage({ type: 'dropped' });
  } else if (m === 'reconnect') {
    reconnectT0 = performance.now();
    catching = consumers.length;
    for (const c of consumers) {
      c.resumedAt = reconnectT0;
      c.caughtMs = undefined;
    }
    openAll(true);
  } else if (m === 'stop') {
    // measuring is over: the closes that follow (the streams end) are expected
    stopping = true;
    for (const c of consumers) c.ws?.terminate();
    parentPort.postMessage({ type: 'done', e2e, problems, closedEarly, resumeProblems, unfinished: catching });
  }
});
