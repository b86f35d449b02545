// Scenario 2 — voice notes: notes per second end to end (streamed HTTP upload → stored WAV →
// event in the outbox, i.e. the 201 of POST /v1/whatsapp/audio) for 5 s and 60 s Ogg/Opus
// voice notes (16 kHz mono, 20 ms frames, as WhatsApp sends) at concurrency 1, 8, 32, versus
// an HTTP server that spawns ffmpeg per note. Daemon CPU gives audio-seconds per CPU-second.
//
//   node bench/voice-notes.mjs [--quick] [--seconds-per-point 8]
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { decodeAudio } from '../dist/audio/decode.js';
import { saveResults, removeAtExit, startDaemon, tempDir } from './lib/daemon.mjs';
import { cpuSeconds, sleep } from './lib/proc.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const quick = Boolean(args.quick);
const POINT_SECONDS = Number(args['seconds-per-point'] ?? (quick ? 4 : 8));
const CONCURRENCY = quick ? [1, 8] : [1, 8, 32];
const DURATIONS = [5, 60];

/** CPU of a process and of its waited-for children (ffmpeg), seconds. */
function cpuWithChildren(pid) {
  const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])) / 100;
}

function makeNote(seconds) {
  const dir = tempDir('note');
  removeAtExit(dir);
  const file = join(dir, `note-${seconds}s.ogg`);
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `sine=frequency=330:duration=${seconds}:sample_rate=16000`,
    '-ac', '1', '-c:a', 'libopus', '-b:a', '16k', '-frame_duration', '20', '-application', 'voip', file]);
  return readFileSync(file);
}

let seq = 0;
/** POSTs one note as a streamed (chunked) body; resolves to the status. */
async function postNote(base, apiKey, note, seconds) {
  const id = `BENCH${process.pid}${seq++}`;
  const body = Readable.toWeb(Readable.from((function* () { for (let o = 0; o < note.length; o += 16 * 1024) yield note.subarray(o, o + 16 * 1024); })()));
  const r = await fetch(`${base}/v1/whatsapp/audio`, {
    method: 'POST',
    duplex: 'half',
    body,
    headers: {
      'content-type': 'audio/ogg; codecs=opus', apikey: apiKey, 'x-tenant-id': 'default', 'x-instance': 'bench',
      'x-chat-id': '5511999999999@s.whatsapp.net', 'x-message-id': id, 'x-audio-seconds': String(seconds), 'x-audio-ptt': 'true',
    },
  });
  await r.arrayBuffer();
  return r.status;
}

/** Closed loop: `concurrency` clients post notes back to back for POINT_SECONDS. */
async function drive(base, apiKey, note, seconds, concurrency, pid, withChildren) {
  const cpu = () => (withChildren ? cpuWithChildren(pid) : cpuSeconds(pid));
  const stopAt = performance.now() + POINT_SECONDS * 1000;
  let ok = 0;
  const statuses = {};
  const cpu0 = cpu();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < stopAt) {
      const s = await postNote(base, apiKey, note, seconds);
      statuses[s] = (statuses[s] ?? 0) + 1;
      if (s === 201) ok++;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const cpuSec = cpu() - cpu0;
  return { 'notes/s': ok / secs, 'audio-s per cpu-s': (ok * seconds) / Math.max(cpuSec, 1e-9), 'cpu %': (100 * cpuSec) / secs, statuses: JSON.stringify(statuses) };
}

export async function runVoiceNotes() {
  const notes = Object.fromEntries(DURATIONS.map((d) => [d, makeNote(d)]));
  const rows = [];
  // Baseline: ffmpeg per note (its CPU includes the ffmpeg children).
  const dir = tempDir('ffbase');
  const base = fork(fileURLToPath(new URL('./baselines/ffmpeg-per-note-server.mjs', import.meta.url)), [dir], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const [{ port }] = await once(base, 'message');
  for (const d of DURATIONS) for (const c of CONCURRENCY) {
    rows.push({ path: 'ffmpeg per note', note: `${d}s`, concurrency: c, ...(await drive(`http://127.0.0.1:${port}`, '', notes[d], d, c, base.pid, true)) });
  }
  base.send('stop');
  await once(base, 'exit');
  removeAtExit(dir);

  // The daemon's in-process Ogg/Opus decoder alone (no HTTP, no store): an upper bound for the route.
  for (const d of DURATIONS) {
    const cpu0 = cpuSeconds(process.pid);
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < POINT_SECONDS * 500) {
      await decodeAudio(Readable.from([notes[d]]), { output: { sampleRate: 16000, channels: 1 } });
      n++;
    }
    const secs = (performance.now() - t0) / 1000;
    rows.push({ path: 'decodeAudio only (in-process)', note: `${d}s`, concurrency: 1, 'notes/s': n / secs, 'audio-s per cpu-s': (n * d) / (cpuSeconds(process.pid) - cpu0), 'cpu %': null, statuses: '' });
  }

  // The daemon, end to end.
  const daemon = await startDaemon({ storage: 'fs', config: { rateLimit: { global: { capacity: 1e6, refillPerMinute: 1e7 }, tenant: { capacity: 1e6, refillPerMinute: 1e7 }, instance: { capacity: 1e6, refillPerMinute: 1e7 } } } });
  try {
    const probe = await postNote(daemon.base, daemon.apiKey, notes[5], 5);
    if (probe === 404 || probe === 405) {
      rows.push({ path: 'audio-ingestd POST /v1/whatsapp/audio', note: '—', concurrency: '—', 'notes/s': null, 'audio-s per cpu-s': null, 'cpu %': null, statuses: `not measured: route answers ${probe}` });
    } else {
      await sleep(500);
      for (const d of DURATIONS) for (const c of CONCURRENCY) {
        rows.push({ path: 'audio-ingestd POST /v1/whatsapp/audio', note: `${d}s`, concurrency: c, ...(await drive(daemon.base, daemon.apiKey, notes[d], d, c, daemon.pid, false)) });
      }
    }
  } finally {
    await daemon.stop();
    removeAtExit(daemon.dataDir);
  }
  for (const r of rows) {
    const b = rows.find((x) => x.path === 'ffmpeg per note' && x.note === r.note && x.concurrency === r.concurrency);
    if (b && r !== b && r['notes/s'] != null) r['vs ffmpeg (≥10)'] = r['notes/s'] / b['notes/s'];
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runVoiceNotes();
  const md = printTable('Voice notes (Ogg/Opus 16 kHz mono): stored notes per second', rows);
  saveResults('voice-notes', { rows }, md);
}
