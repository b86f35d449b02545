// Loaded into the daemon by the bench (`--import`, daemon-s3 only): when the daemon sent each S3
// request and when its answer's head came back, by operation, from node:http's diagnostics
// channels (no patching; the SDK's node:http handler publishes there). "Sent" is the moment the
// daemon issued the request (a ClientRequest exists), "answered" the moment its response head
// arrived, both in epoch ms. Appended to $BENCH_S3_TIMES as lines `<op> <sentMs> <answeredMs>`
// once a second (one small synchronous append of what is new), and at exit.
import dc from 'node:diagnostics_channel';
import { appendFileSync } from 'node:fs';

const out = process.env.BENCH_S3_TIMES;
if (out) {
  const sent = new WeakMap();
  let lines = '';
  const opOf = (method, path) => {
    const q = path.includes('?') ? path.slice(path.indexOf('?')) : '';
    if (method === 'POST' && /[?&]uploadId=/.test(q)) return 'CompleteMultipartUpload';
    if (method === 'POST' && /[?&]uploads(=|&|$)/.test(q)) return 'CreateMultipartUpload';
    if (method === 'PUT' && /[?&]partNumber=/.test(q)) return 'UploadPart';
    if (method === 'PUT') return 'PutObject';
    if (method === 'HEAD') return 'HeadObject';
    if (method === 'DELETE') return /[?&]uploadId=/.test(q) ? 'AbortMultipartUpload' : 'DeleteObject';
    return method === 'GET' ? 'GetObject' : method;
  };
  dc.subscribe('http.client.request.start', ({ request }) => {
    sent.set(request, Date.now());
  });
  dc.subscribe('http.client.response.finish', ({ request }) => {
    const at = sent.get(request);
    if (at !== undefined) lines += `${opOf(request.method, request.path)} ${at} ${Date.now()}\n`;
  });
  const flush = () => {
    if (lines === '') return;
    appendFileSync(out, lines);
    lines = '';
  };
  setInterval(flush, 1000).unref();
  process.on('exit', flush);
}
