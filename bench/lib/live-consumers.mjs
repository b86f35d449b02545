// The consumers of bench/live-out.mjs on a thread of their own, so that N senders and N
// consumers do not share one event loop (at N = 200 one thread could not keep up with both).
// workerData: { wsBase, apiKey, rate, ids: [recordingId per stream], rooms: [room name per
// stream] | undefined, sentAt: SharedArrayBuffer, sentCount: SharedArrayBuffer (Int32 frames
// sent per stream), maxFrames, edgeMarginMs }. Without rooms, one consumer per stream
// (recordingId=); with rooms, one per room (roomName=, every track of it).
// Messages in: 'measure' | 'pause' | 'drop' | 'reconnect' | 'stop'; out: { type: 'open' } once every
// socket is open (again, after 'reconnect'), { type: 'refused', i, status, body }, { type: 'dropped' },
// { type: 'caught-up', ms: [per consumer] } once every reconnected consumer reached the live edge,
// and on stop { type: 'done', e2e, problems, closedEarly, resumeProblems, unfinished }.
//
// 'drop' cuts every socket at once (a network blip: terminate, no close handshake) and keeps
// each track's next offset; 'reconnect' opens them again with from=<those offsets>, checks that
// each track's first audio starts exactly there (resumeProblems counts those that do not) and
// that the offsets stay contiguous, and times each consumer until the audio of all its tracks
// reaches the live edge (what the egress generator has sent, less edgeMarginMs).
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';

const { wsBase, apiKey, rate, ids, rooms, maxFrames } = workerData;
const sentAt = new Float64Array(workerData.sentAt);
const sentCount = new Int32Array(workerData.sentCount);
const marginSamples = Math.round((rate * (workerData.edgeMarginMs ?? 100)) / 1000);
const streamOf = new Map(ids.map((id, i) => [id, i]));
const e2e = [];
let problems = 0;
let resumeProblems = 0;
let closedEarly = 0;
let measuring = false;
let stopping = false;

/** Per consumer: its selection, its socket, per recording the stream and the next offset, its catch-up state. */
const consumers = rooms === undefined
  ? ids.map((id) => ({ select: `recordingId=${id}`, room: false, streams: [streamOf.get(id)], tracks: new Map() }))
  : [...new Set(rooms)].map((room) => ({ select: `roomName=${room}`, room: true, streams: rooms.flatMap((r, i) => (r === room ? [i] : [])), tracks: new Map() }));
let catching = 0;

function fromParam(c) {
  if (c.tracks.size === 0) return undefined;
  if (!c.room) return String([...c.tracks.values()][0].next);
  return [...c.tracks].map(([id, tr]) => `${id}:${tr.next}`).join(',');
}

function caughtUp(c) {
  if (c.tracks.size < c.streams.length) return false;
  for (const tr of c.tracks.values()) if (tr.next < Math.floor((sentCount[tr.stream] * 480 * rate) / 48000) - marginSamples) return false;
  return true;
}

function connect(c, resume) {
  const from = resume ? fromParam(c) : undefined;
  const ws = new WebSocket(`${wsBase}/v1/live?${c.select}&rate=${rate}${from === undefined ? '' : `&from=${from}`}`, { headers: { apikey: apiKey }, perMessageDeflate: false });
  c.ws = ws;
  /** This connection's track indexes → the recording's state; the first audio of each is checked against its from. */
  const byIndex = new Map();
  const expectFirst = new Map(resume ? [...c.tracks].map(([id, tr]) => [id, tr.next]) : []);
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const m = JSON.parse(data.toString());
      if (m.type === 'track') {
        let tr = c.tracks.get(m.recordingId);
        if (tr === undefined) c.tracks.set(m.recordingId, (tr = { stream: streamOf.get(m.recordingId), next: undefined }));
        byIndex.set(m.index, { id: m.recordingId, tr, first: true });
      }
      return;
    }
    const t = byIndex.get(data.readUInt32LE(0));
    if (t === undefined) return;
    const { tr } = t;
    const offset = Number(data.readBigUInt64LE(4));
    const n = (data.length - 12) / 2;
    if (t.first) {
      t.first = false;
      const want = expectFirst.get(t.id);
      if (want !== undefined && offset !== want) resumeProblems++;
    } else if (tr.next !== offset) problems++;
    tr.next = offset + n;
    if (c.resumedAt !== undefined && c.caughtMs === undefined && caughtUp(c)) {
      c.caughtMs = performance.now() - c.resumedAt;
      if (--catching === 0) parentPort.postMessage({ type: 'caught-up', ms: consumers.map((x) => x.caughtMs) });
    }
    if (!measuring || tr.stream === undefined) return;
    // the egress frame whose arrival let the daemon send this message's last sample
    const k = Math.floor(((offset + n) * 48000) / rate / 480) - 1;
    const at = k >= 0 && k < maxFrames ? sentAt[tr.stream * maxFrames + k] : 0;
    if (at > 0) e2e.push(performance.timeOrigin + performance.now() - at);
  });
  ws.on('close', () => {
    if (!stopping && c.ws === ws) closedEarly++;
  });
  ws.on('error', () => undefined);
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => parentPort.postMessage({ type: 'refused', i: c.select, status: res.statusCode, body }));
  });
  return new Promise((resolve) => ws.once('open', resolve));
}

function openAll(resume) {
  void Promise.all(consumers.map((c) => connect(c, resume))).then(() => parentPort.postMessage({ type: 'open' }));
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
    const t0 = performance.now();
    catching = consumers.length;
    for (const c of consumers) {
      c.resumedAt = t0;
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
