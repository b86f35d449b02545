import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { startDaemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { configFile, daemonEgressUrl, metric, ndjsonEvents, openEgress, reportFigure, sendPaced } from '../helpers/reliability.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';

const IDLE_SEC = 5;

t.test('misbehaving clients', async (t) => {
  const d = await startDaemon({ AUDIO_INGEST_CONFIG: configFile({ livekit: { idleTimeoutSec: IDLE_SEC }, tenantDefaults: { maxStreams: 2000 } }) });
  t.teardown(() => void d.child.kill('SIGKILL'));
  const completedOf = (trackId: string): Record<string, unknown> | undefined => ndjsonEvents(d.dataDir).find((e) => e.type === 'recording.completed' && e.track_id === trackId);
  const master = (e: Record<string, unknown>): ReturnType<typeof readWav> => readWav(readFileSync(join(d.dataDir, 'store', 'objects', e.s3_key_master as string)));
  const streamsActive = async (): Promise<number> => metric(await (await fetch(`${d.baseUrl}/metrics`)).text(), 'audio_ingestd_streams_active', 'source="livekit"');

  await t.test('a client that stalls 3 s then bursts: every byte kept', async (t) => {
    const pcm = randomStereo(48000 * 6, 41);
    const r = await simulateEgress({ url: await daemonEgressUrl(d.port, { roomName: 'stall', trackId: 'TR_stall' }), pcm, realtime: true, stall: { atSec: 1, durationSec: 3 } });
    const e = await waitFor(() => completedOf('TR_stall'), 10_000, 'completed');
    const wav = master(e);
    t.equal(e.end_reason, 'normal');
    t.equal(e.dropped_bytes, 0);
    const exact = wav.data.equals(downmix(pcm));
    t.ok(exact, 'master equals the downmixed input');
    reportFigure({ fault: 'client stalls 3 s then bursts the backlog', checked: 'master byte-equal to the input, end_reason normal, nothing dropped', bytesSent: r.bytesSent, bytesStored: wav.dataSize, samplesLost: pcm.length / 4 - wav.dataSize / 2, eventsExpected: 1, eventsDelivered: 1, ok: exact && e.end_reason === 'normal' && e.dropped_bytes === 0 });
  });

  await t.test('a client that goes silent and never closes: ended by the idle timeout', async (t) => {
    const pcm = randomStereo(48000, 42);
    const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName: 'idle', trackId: 'TR_idle' }));
    const sent = await sendPaced(ws, pcm, { speed: 4 });
    const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), (IDLE_SEC + 10) * 1000))]);
    t.equal(code, 1001, 'closed by the daemon (1001 idle timeout)');
    const e = await waitFor(() => completedOf('TR_idle'), 10_000, 'completed');
    t.equal(e.end_reason, 'timeout');
    const exact = master(e).data.equals(downmix(pcm));
    t.ok(exact, 'everything received before the silence is stored');
    reportFigure({ fault: `client silent and never closing (idleTimeoutSec ${IDLE_SEC})`, checked: 'closed with 1001, recording.completed end_reason timeout, master = every byte sent', bytesSent: sent, bytesStored: master(e).dataSize, samplesLost: (sent - master(e).dataSize * 2) / 4, eventsExpected: 1, eventsDelivered: 1, ok: code === 1001 && e.end_reason === 'timeout' && exact });
  });

  await t.test('1 000 connections opened and dropped at once: healthy, nothing leaked', async (t) => {
    const n = 1000;
    const frame = randomStereo(480, 43);
    const urls = await Promise.all(Array.from({ length: n }, (_, i) => daemonEgressUrl(d.port, { roomName: 'herd', trackId: `TR_herd_${i}` })));
    const opened = await Promise.allSettled(urls.map((u) => openEgress(u)));
    const sockets = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    t.equal(sockets.length, n, 'all 1 000 accepted');
    for (const s of sockets) s.ws.send(frame, { binary: true });
    await waitFor(async () => (await streamsActive()) === n || undefined, 60_000, `${n} live streams`);
    for (const s of sockets) s.ws.terminate();
    await waitFor(async () => (await streamsActive()) === 0 || undefined, 60_000, 'streams_active back to 0');
    const herd = (): Record<string, unknown>[] => ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.completed' && e.room_name === 'herd');
    await waitFor(() => herd().length === n || undefined, 120_000, `${n} completed events`);
    const events = herd();
    const finalized = events.every((e) => e.end_reason === 'aborted' && e.status === 'completed');
    const whole = events.every((e) => e.size_bytes === MASTER_HEADER_BYTES + 960);
    t.ok(finalized, 'every dropped stream finalized as aborted');
    t.ok(whole, 'every master holds its one frame');
    const health = (await fetch(`${d.baseUrl}/health`)).status;
    const ready = (await fetch(`${d.baseUrl}/ready`)).status;
    t.equal(health, 200);
    t.equal(ready, 200);
    // and the daemon still records normally
    const pcm = randomStereo(48000, 44);
    await simulateEgress({ url: await daemonEgressUrl(d.port, { roomName: 'after', trackId: 'TR_after' }), pcm, realtime: false });
    const after = await waitFor(() => completedOf('TR_after'), 10_000, 'completed after the herd');
    const afterExact = master(after).data.equals(downmix(pcm));
    t.ok(afterExact);
    reportFigure({ fault: '1 000 egress connections opened, one frame each, dropped at once', checked: '/health and /ready 200, streams_active back to 0, 1 000 completed (aborted) events each with its frame, next stream exact', bytesSent: n * frame.length, bytesStored: events.reduce((s, e) => s + (e.size_bytes as number) - MASTER_HEADER_BYTES, 0), samplesLost: 0, eventsExpected: n, eventsDelivered: events.length, ok: sockets.length === n && events.length === n && finalized && whole && health === 200 && ready === 200 && afterExact });
  });

  d.child.kill('SIGTERM');
  t.equal(await d.exited, 0);
});
