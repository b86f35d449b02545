import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { simulateEgress, type SimulateEgressResult } from '../../src/clients/egress-simulator.js';
import { startDaemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { daemonEgressUrl, metric, ndjsonEvents, reportFigure } from '../helpers/reliability.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('SIGTERM with 100 live streams: all finalized within the drain window, exit 0, 100 completed events', async (t) => {
  const drainSeconds = 8;
  const d = await startDaemon({ DRAIN_SECONDS: String(drainSeconds) });
  t.teardown(() => void d.child.kill('SIGKILL'));
  const pcm = randomStereo(48000 * 30, 31);
  const expected = downmix(pcm);
  // Even streams end by themselves inside the drain window (4 s of audio); odd ones (30 s) outlive it.
  const urls = await Promise.all(Array.from({ length: 100 }, (_, i) => daemonEgressUrl(d.port, { roomName: 'drain', trackId: `TR_${i}` })));
  const running: Promise<SimulateEgressResult>[] = urls.map((url, i) => simulateEgress({ url, pcm: i % 2 === 0 ? pcm.subarray(0, 4 * 192_000) : pcm, realtime: true, end: 'normal' }));
  // Every stream accepted: live now, or (an even one, on a busy machine) already ended by itself.
  // Waiting for 100 *active* could never succeed once a 4 s stream ended before the last opened.
  await waitFor(async () => {
    const text = await (await fetch(`${d.baseUrl}/metrics`)).text();
    const accepted = metric(text, 'audio_ingestd_streams_active', 'source="livekit"') + metric(text, 'audio_ingestd_streams_total', 'source="livekit",end_reason="normal"');
    return accepted === 100 || undefined;
  }, 60_000, '100 streams accepted');
  d.child.kill('SIGTERM');
  const signalledAt = Date.now();
  const code = await d.exited;
  const stopMs = Date.now() - signalledAt;
  const results = await Promise.all(running);
  t.equal(code, 0, 'exit 0');

  // Events appended in the last moments may still be in the (durable) outbox at exit: a restart on
  // the same DATA_DIR delivers them. Count what the first process delivered, then what the restart did.
  const deliveredAtExit = ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.completed').length;
  const again = await startDaemon({ DATA_DIR: d.dataDir });
  t.teardown(() => void again.child.kill('SIGKILL'));
  await waitFor(() => ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.completed').length >= 100 || undefined, 15_000, '100 completed events after the restart');
  again.child.kill('SIGTERM');
  t.equal(await again.exited, 0);
  const completed = ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.completed');
  t.equal(completed.length, 100, '100 recording.completed events');
  const byTrack = new Map(completed.map((e) => [e.track_id as string, e]));
  let sentTotal = 0;
  let storedTotal = 0;
  let inFlightAtClose = 0;
  let wrong = 0;
  for (let i = 0; i < 100; i++) {
    const e = byTrack.get(`TR_${i}`);
    if (!e) {
      t.fail(`no completed event for TR_${i}`, { events: ndjsonEvents(d.dataDir).filter((x) => x.track_id === `TR_${i}`), sim: results[i], log: d.output().split('\n').filter((l) => l.includes(`TR_${i}"`) || /"level":"(warn|error|fatal)"/.test(l)).join('\n') });
      continue;
    }
    const r = results[i]!;
    const wav = readWav(readFileSync(join(d.dataDir, 'store', 'objects', e.s3_key_master as string)));
    sentTotal += r.bytesSent;
    storedTotal += wav.dataSize;
    const prefix = wav.data.equals(expected.subarray(0, wav.dataSize));
    t.ok(prefix, `TR_${i}: master is an exact prefix of the input`);
    if (i % 2 === 0) {
      t.equal(e.end_reason, 'normal');
      t.equal(wav.dataSize, r.bytesSent / 2, `TR_${i}: every byte sent is stored`);
      if (!prefix || e.end_reason !== 'normal' || wav.dataSize !== r.bytesSent / 2) wrong += 1;
    } else {
      t.equal(e.end_reason, 'shutdown');
      t.equal(r.closeCode, 1001, 'ended by the daemon with 1001');
      // frames the client wrote after the daemon closed the stream were never accepted
      inFlightAtClose += r.bytesSent / 2 - wav.dataSize;
      t.ok(wav.dataSize <= r.bytesSent / 2);
      if (!prefix || e.end_reason !== 'shutdown' || r.closeCode !== 1001 || wav.dataSize > r.bytesSent / 2) wrong += 1;
    }
  }
  const lines = d.output();
  const ranOut = /"outcome":"timeout"[^\n]*"drain window over"/.test(lines);
  const errors = /"level":"error"/.test(lines);
  t.ok(ranOut, 'the drain window ran out with the long streams still live');
  t.notOk(errors, 'no error logged');
  reportFigure({
    fault: 'SIGTERM with 100 live streams (50 end inside the 8 s drain window, 50 outlive it)',
    checked: 'exit 0; 100 recording.completed (50 normal, 50 shutdown); every master an exact prefix of its input; the 50 that ended themselves stored every byte',
    bytesSent: sentTotal, bytesStored: storedTotal, samplesLost: 0, eventsExpected: 100, eventsDelivered: completed.length,
    notes: `${deliveredAtExit} of 100 completed events delivered before exit, the rest from the durable outbox at the next start; stopped ${(stopMs / 1000).toFixed(1)} s after SIGTERM (drain ${drainSeconds} s); ${inFlightAtClose / 2} stereo frames were written by clients after the daemon had closed their stream (never accepted)`,
    ok: code === 0 && completed.length === 100 && wrong === 0 && ranOut && !errors,
  });
});
