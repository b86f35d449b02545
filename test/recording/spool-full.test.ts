import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { metricValue, startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { reportFigure } from '../helpers/reliability.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('the spool budget defaults to half the free disk, at least 1 GiB', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  t.ok(h.app.spool.maxBytes >= 1024 ** 3, `${h.app.spool.maxBytes} bytes`);
});

t.test('a full spool drops audio beyond the budget, counts it and reports it; what was accepted is stored whole', async (t) => {
  const h = await startTestApp({ spool: { maxBytes: 300_000 }, livekit: { groupSeconds: 0.5 } });
  t.teardown(() => h.close());
  const pcm = randomStereo(48000 * 5, 17);
  await simulateEgress({ url: await egressUrl(h, { roomName: 'full', trackId: 'TR_f' }), pcm, realtime: false });
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed'), 10_000);
  const chunk = 48_000; // 0.5 s of 48 kHz mono
  const accepted = Math.floor(300_000 / chunk) * chunk;
  t.equal(ev.dropped_bytes, 480_000 - accepted, 'the event reports what was dropped');
  const wav = readWav(await h.app.store.get(ev.s3_key_master as string));
  t.equal(wav.dataSize, accepted);
  const exact = wav.data.equals(downmix(pcm).subarray(0, accepted));
  t.ok(exact, 'the accepted audio is stored exactly');
  const counted = await metricValue(h.baseUrl, 'audio_ingestd_frames_dropped_total', 'source="livekit",reason="spool_full"');
  t.equal(counted, (480_000 - accepted) / chunk, 'drops counted per chunk');
  const health = (await fetch(`${h.baseUrl}/health`)).status;
  t.equal(health, 200);
  t.equal(h.app.spool.usedBytes, 0, 'the spool is released after the upload');
  reportFigure({
    fault: 'disk spool full (spool.maxBytes 300 000 B, 5 s stream)',
    checked: 'audio beyond the budget dropped, counted (frames_dropped_total{reason="spool_full"}) and reported in recording.completed.dropped_bytes; the accepted prefix stored exactly; daemon healthy',
    bytesSent: pcm.length, bytesStored: wav.dataSize, samplesLost: 0, eventsExpected: 1, eventsDelivered: 1,
    notes: `${String(ev.dropped_bytes)} B of mono audio refused at the door (reported, not lost silently)`,
    ok: ev.dropped_bytes === 480_000 - accepted && wav.dataSize === accepted && exact && counted === (480_000 - accepted) / chunk && health === 200 && h.app.spool.usedBytes === 0,
  });
});
