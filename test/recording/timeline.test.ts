import t, { type Test } from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { Timeline } from '../../src/recording/timeline.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, readWav } from '../helpers/egress.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { waitFor } from '../helpers/wait-for.js';

type Ev = Record<string, unknown>;
type Run = { start: number; samples: number; wall_clock: string };

const RATE = 48000;
const FRAME = 480; // 10 ms at 48 kHz

/** Seeded jitter in [0, maxMs): network delay is never negative. */
function jitter(seed: number, maxMs: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return ((x >>> 8) / (1 << 24)) * maxMs;
  };
}

/** Feeds `seconds` of 10 ms frames sent at `t0 + sender time / (1 + ppm)`, delayed by `delay()`. */
function feed(tl: Timeline, state: { out: number }, t0: number, seconds: number, ppm: number, delay: () => number): void {
  const frames = Math.round((seconds * RATE) / FRAME);
  for (let i = 1; i <= frames; i++) {
    const sentAt = t0 + (i * FRAME * 1000) / RATE / (1 + ppm / 1e6);
    tl.frame(sentAt + delay(), FRAME, state.out);
    state.out += FRAME;
  }
}

t.test('Timeline (arrival times given): gaps, bursts, drift, drops', async (t) => {
  await t.test('a steady stream is one run starting at its first sample', async (t) => {
    const tl = new Timeline({ inputRate: RATE });
    const s = { out: 0 };
    feed(tl, s, 1_000_000, 8, 0, jitter(1, 8));
    const r = tl.result(s.out, RATE);
    t.equal(r.runs.length, 1);
    t.same(r.runs[0]!.start, 0);
    t.equal(r.runs[0]!.samples, s.out);
    t.ok(Math.abs(r.startedAtMs! - 1_000_000) < 2, `started at the first sample (${r.startedAtMs! - 1_000_000} ms off)`);
    t.ok(Math.abs(r.driftPpm!) < 100, `no drift (${r.driftPpm} ppm)`);
  });

  await t.test('a stall after which the sender resumes at its pace is a second run, the gap its length', async (t) => {
    const tl = new Timeline({ inputRate: RATE, minDriftSec: 1 });
    const s = { out: 0 };
    const j = jitter(2, 5);
    feed(tl, s, 0, 3, 0, j);
    feed(tl, s, 4000, 4, 0, j); // samples 3 s..7 s sent 1 s late
    const r = tl.result(s.out, RATE);
    t.equal(r.runs.length, 2, 'two runs');
    t.equal(r.runs[1]!.start, 3 * RATE, 'the second starts where the stall began');
    t.equal(r.runs[0]!.samples + r.runs[1]!.samples, s.out, 'the runs tile the recording');
    const gap = r.runs[1]!.wallMs - (r.runs[0]!.wallMs + 3000);
    t.ok(Math.abs(gap - 1000) < 6, `1 s gap (${gap.toFixed(1)} ms)`);
    t.ok(Math.abs(r.driftPpm!) < 200, `no drift across the gap (${r.driftPpm} ppm)`);
  });

  await t.test('a stall caught up in a burst is no gap', async (t) => {
    const tl = new Timeline({ inputRate: RATE, minDriftSec: 1 });
    const s = { out: 0 };
    const j = jitter(3, 5);
    feed(tl, s, 0, 3, 0, j);
    // 1 s of frames held back, then delivered at once, then on time again
    for (let i = 1; i <= 100; i++) {
      tl.frame(4000 + i * 0.01, FRAME, s.out);
      s.out += FRAME;
    }
    feed(tl, s, 4000, 4, 0, j);
    const r = tl.result(s.out, RATE);
    t.equal(r.runs.length, 1, 'one run');
    t.ok(Math.abs(r.driftPpm!) < 200, `the burst does not bend the drift (${r.driftPpm} ppm)`);
  });

  for (const ppm of [1500, -1500]) {
    await t.test(`a sender clock ${ppm} ppm off is measured through jitter`, async (t) => {
      const tl = new Timeline({ inputRate: RATE });
      const s = { out: 0 };
      feed(tl, s, 0, 60, ppm, jitter(4, 20));
      const r = tl.result(s.out, RATE);
      t.equal(r.runs.length, 1);
      t.ok(Math.abs(r.driftPpm! - ppm) < 30, `estimated ${r.driftPpm} ppm`);
    });
  }

  await t.test('a mute cut starts a new run; dropped output is taken out and later runs move up', async (t) => {
    const tl = new Timeline({ inputRate: RATE });
    const s = { out: 0 };
    feed(tl, s, 0, 2, 0, () => 0);
    tl.cut();
    feed(tl, s, 5000, 2, 0, () => 0);
    tl.dropped(RATE / 2, RATE / 2); // 0.5 s..1 s of the first run lost
    const r = tl.result(s.out, RATE);
    t.same(
      r.runs.map((x) => [x.start, x.samples, Math.round(x.wallMs)]),
      [
        [0, RATE / 2, 0],
        [RATE / 2, RATE, 1000],
        [1.5 * RATE, 2 * RATE, 5000],
      ],
    );
  });

  await t.test('nothing received: no runs, no start, no drift', async (t) => {
    const r = new Timeline({ inputRate: RATE }).result(0, RATE);
    t.same(r, { runs: [], startedAtMs: null, driftPpm: null });
  });
});

function completed(h: TestApp, trackId: string): Ev | undefined {
  return outboxEvents(h).find((e) => e.type === 'recording.completed' && e.track_id === trackId);
}

async function samplesOf(h: TestApp, e: Ev): Promise<number> {
  return readWav(await h.app.store.get(e.s3_key_master as string)).data.length / 2;
}

function checkTiles(t: Test, runs: Run[], total: number): void {
  let at = 0;
  for (const r of runs) {
    t.equal(r.start, at, `run at ${r.start} follows the one before`);
    at += r.samples;
  }
  t.equal(at, total, 'the runs cover the master');
}

t.test('real daemon and egress clients: timeline, started_at and drift_ppm in recording.completed', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const schema = loadSchema('recording.completed');
  const run = async (trackId: string, opts: Partial<Parameters<typeof simulateEgress>[0]>) => {
    const url = await egressUrl(h, { roomName: 'room-tl', trackId, participant: trackId });
    const { startedAtMs: sentAt } = await simulateEgress({ url, pcm: tonePcm(4, 300), ...opts });
    const ev = await waitFor(() => completed(h, trackId), 15_000, `${trackId} completed`);
    t.same(validate(schema, ev), [], `${trackId}: the event matches the schema`);
    return { ev, sentAt, runs: ev.timeline as Run[] };
  };
  const [stall, burst, mute, fast, slow, steady] = await Promise.all([
    run('TR_stall', { stall: { atSec: 1.5, durationSec: 1, catchUp: false } }),
    run('TR_burst', { stall: { atSec: 1.5, durationSec: 1 } }),
    run('TR_mute', { mutes: [{ atSec: 1, durationSec: 1.2 }] }),
    run('TR_fast', { pcm: tonePcm(12, 300), clockPpm: 3000 }),
    run('TR_slow', { pcm: tonePcm(12, 300), clockPpm: -3000 }),
    run('TR_steady', { pcm: tonePcm(12, 300) }),
  ]);

  await t.test('a stream that stalls 1 s and resumes at its pace: two runs, 1 s apart on the wall clock', async (t) => {
    // On a quiet machine exactly two runs; a test process starved of CPU for over a second can
    // show an extra, small gap elsewhere (arrival times are all the evidence there is).
    t.ok(stall.runs.length >= 2, JSON.stringify(stall.runs));
    checkTiles(t, stall.runs, await samplesOf(h, stall.ev));
    const gapBefore = (i: number): number => Date.parse(stall.runs[i]!.wall_clock) - (Date.parse(stall.runs[i - 1]!.wall_clock) + (stall.runs[i - 1]!.samples * 1000) / RATE);
    const at = stall.runs.findIndex((r, i) => i > 0 && Math.abs(r.start - 1.5 * RATE) <= 2 * FRAME);
    t.ok(at > 0, `a run starts at the stall (${JSON.stringify(stall.runs.map((r) => r.start))})`);
    if (at > 0) t.ok(Math.abs(gapBefore(at) - 1000) < 40, `the wall-clock gap is the stall (${gapBefore(at)} ms)`);
    for (let i = 1; i < stall.runs.length; i++) if (i !== at) t.ok(gapBefore(i) < 300, `any other gap is small lateness (${gapBefore(i)} ms)`);
    t.equal(stall.ev.started_at, stall.runs[0]!.wall_clock, 'started_at is the first run');
    t.ok(Math.abs(Date.parse(stall.ev.started_at as string) - stall.sentAt) < 40, `started_at is when the sender began (${Date.parse(stall.ev.started_at as string) - stall.sentAt} ms)`);
  });

  await t.test('a stall the sender catches up in a burst loses nothing: one run', async (t) => {
    t.equal(burst.runs.length, 1, JSON.stringify(burst.runs));
    checkTiles(t, burst.runs, await samplesOf(h, burst.ev));
  });

  await t.test('a mute without fill is an explicit gap', async (t) => {
    t.equal(mute.runs.length, 2, JSON.stringify(mute.runs));
    checkTiles(t, mute.runs, await samplesOf(h, mute.ev));
    t.equal(mute.runs[1]!.start, RATE, 'the second run starts at the mute');
    const gap = Date.parse(mute.runs[1]!.wall_clock) - (Date.parse(mute.runs[0]!.wall_clock) + 1000);
    t.ok(Math.abs(gap - 1200) < 40, `the gap is the mute (${gap} ms)`);
  });

  await t.test('a sender clock ±3000 ppm off is measured', async (t) => {
    // a loaded test machine delays frames unevenly; the arrival-time unit tests above check the precision
    t.ok(Math.abs((fast.ev.drift_ppm as number) - 3000) < 1000, `fast: ${String(fast.ev.drift_ppm)} ppm`);
    t.ok(Math.abs((slow.ev.drift_ppm as number) + 3000) < 1000, `slow: ${String(slow.ev.drift_ppm)} ppm`);
    t.equal(fast.runs.length, 1);
    t.equal(slow.runs.length, 1);
    t.ok(Math.abs(steady.ev.drift_ppm as number) < 1000, `a paced stream shows little drift (${String(steady.ev.drift_ppm)} ppm)`);
    t.equal(stall.ev.drift_ppm, null, 'too short to tell: null');
  });
});

t.test('with muteFill silence the filled mute is part of its run', async (t) => {
  const h = await startTestApp({ livekit: { muteFill: 'silence' } });
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-fill', trackId: 'TR_fill' });
  await simulateEgress({ url, pcm: tonePcm(3, 300), mutes: [{ atSec: 1, durationSec: 1 }] });
  const ev = await waitFor(() => completed(h, 'TR_fill'), 15_000);
  const runs = ev.timeline as Run[];
  t.equal(runs.length, 1, JSON.stringify(runs));
  checkTiles(t, runs, await samplesOf(h, ev));
});
