import t from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav, speechEgressPcm } from '../helpers/egress.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';

function peak(data: Buffer): number {
  let p = 0;
  for (let i = 0; i + 1 < data.length; i += 2) p = Math.max(p, Math.abs(data.readInt16LE(i)));
  return p;
}

t.test('configured output: 16 kHz resampled, peak-normalized, never clipping, exact length', async (t) => {
  const h = await startTestApp({ output: { sampleRate: 16000, normalize: 'peak', targetDb: -3 }, livekit: { groupSeconds: 0.5 } });
  t.teardown(() => h.close());
  const speech = await speechEgressPcm();
  const loud = tonePcm(1.5, 440, 48000, 2, 1.0);
  const urls = await Promise.all([egressUrl(h, { roomName: 'out', trackId: 'speech' }), egressUrl(h, { roomName: 'out', trackId: 'loud' })]);
  await Promise.all([
    simulateEgress({ url: urls[0]!, pcm: speech, realtime: false, frameBytes: 1920 }),
    simulateEgress({ url: urls[1]!, pcm: loud, realtime: false, frameBytes: 1920 }),
  ]);
  await waitFor(() => outboxEvents(h).filter((e) => e.type === 'recording.completed').length === 2 || undefined, 15_000);
  for (const [track, input] of [['speech', speech], ['loud', loud]] as const) {
    const ev = outboxEvents(h).find((e) => e.type === 'recording.completed' && e.track_id === track)!;
    const wav = readWav(await h.app.store.get(ev.s3_key_master as string));
    t.equal(wav.sampleRate, 16000, `${track}: resampled to 16 kHz`);
    t.equal(wav.channels, 1);
    t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize);
    const inputFrames = input.length / 4;
    t.equal(wav.dataSize / 2, Math.ceil(inputFrames / 3), `${track}: every input sample accounted for (48k → 16k)`);
    t.equal(ev.duration_sec, Math.round((wav.dataSize / 2 / 16000) * 1000) / 1000);
    const p = peak(wav.data);
    t.ok(p < 32767, `${track}: no clipping (peak ${p})`);
    t.ok(p > 0.3 * 32767, `${track}: audible level after normalization (peak ${p})`);
  }
  const meta = await h.app.store.head(outboxEvents(h).find((e) => e.type === 'recording.completed')!.s3_key_master as string);
  t.match(meta?.metadata, { 'sample-rate': '16000', channels: '1', source: 'livekit', tenant: 'default' }, 'object metadata');
  t.ok(meta?.metadata['duration-sec'], 'duration in metadata');
});

t.test('chunk buffers recycled through the pool many times over still give exact masters', async (t) => {
  const h = await startTestApp({ livekit: { groupSeconds: 0.1 } });
  t.teardown(() => h.close());
  const inputs = [1, 2, 3].map((seed) => randomStereo(48000 * 3 + seed * 7, seed));
  const urls = await Promise.all(inputs.map((_, i) => egressUrl(h, { roomName: 'pool', trackId: `TR_${i}` })));
  await Promise.all(inputs.map((pcm, i) => simulateEgress({ url: urls[i]!, pcm, realtime: false, frameBytes: 1920 })));
  await waitFor(() => outboxEvents(h).filter((e) => e.type === 'recording.completed').length === 3 || undefined, 15_000);
  for (const [i, pcm] of inputs.entries()) {
    const ev = outboxEvents(h).find((e) => e.type === 'recording.completed' && e.track_id === `TR_${i}`)!;
    const wav = readWav(await h.app.store.get(ev.s3_key_master as string));
    t.ok(wav.data.equals(downmix(pcm.subarray(0, pcm.length - (pcm.length % 4)))), `TR_${i}: 30 recycled chunks, samples identical`);
  }
});
