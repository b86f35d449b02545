// Baseline for voice notes: an HTTP server that spawns one ffmpeg per note (request body →
// ffmpeg stdin, 16 kHz mono WAV on stdout → fs.writeFile) and answers 201.
// argv: <directory>; sends {type:'listening', port} over IPC.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';

const dir = process.argv[2];
let n = 0;
const server = createServer((req, res) => {
  const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', 'pipe:0', '-ac', '1', '-ar', '16000', '-f', 'wav', 'pipe:1'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const out = [];
  ff.stdout.on('data', (d) => out.push(d));
  req.pipe(ff.stdin);
  ff.on('close', async (code) => {
    if (code !== 0) {
      res.writeHead(415).end();
      return;
    }
    const name = join(dir, `${n++}.wav`);
    await writeFile(name, Buffer.concat(out));
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'stored', key: name }));
  });
});
server.listen(0, '127.0.0.1', () => process.send({ type: 'listening', port: server.address().port }));
process.on('message', (m) => m === 'stop' && process.exit(0));
