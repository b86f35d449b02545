import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { voicedSpan } from '../helpers/audio-signal.js';
import { downmix, egressUrl, outboxEvents, speechEgressPcm } from '../helpers/egress.js';
import { s3rverStorage } from '../helpers/storage-s3rver.js';
import { waitFor } from '../helpers/wait-for.js';

type Interval = { start: number; end: number };
type Turn = { participant: string; startMs: number; endMs: number };
type Run = { start: number; samples: number; roomOffset: number };

const RATE = 48000;
/** Silence before A's first utterance and after each participant's last one, in seconds. */
const LEAD = 0.5;
const TAIL = 0.5;
/** B joins this long after A (wall clock). */
const B_JOIN_MS = 2000;
/** B's utterance starts this long into A's pause, and A's pause outlasts it by as much again. */
const MARGIN = 0.6;
const TOLERANCE_MS = 100;

interface Manifest {
  tracks: { recordingId: string; participant: string; offset: { samples: number; ms: number }; samples: number; timeline: Run[]; speech: Interval[] }[];
  speakers: Turn[];
}

/** An eSpeak NG utterance as egress's 48 kHz stereo, trimmed to its voiced samples. */
async function utterance(text: string): Promise<Buffer> {
  const stereo = await speechEgressPcm(text);
  const mono = downmix(stereo);
  const v = voicedSpan(new Int16Array(mono.buffer, mono.byteOffset, mono.length / 2), RATE);
  return stereo.subarray(v.start * 4, v.end * 4);
}

/** Utterances each after its silence (seconds), then a tail; and where the speech lies in the samples. */
function compose(parts: { silence: number; speech: Buffer }[]): { pcm: Buffer; speech: Interval[] } {
  const out: Buffer[] = [];
  const speech: Interval[] = [];
  let at = 0;
  for (const p of parts) {
    const gap = Math.round(p.silence * RATE);
    out.push(Buffer.alloc(gap * 4), p.speech);
    speech.push({ start: at + gap, end: at + gap + p.speech.length / 4 });
    at += gap + p.speech.length / 4;
  }
  out.push(Buffer.alloc(Math.round(TAIL * RATE) * 4));
  return { pcm: Buffer.concat(out), speech };
}

t.test('who spoke when, with real speech: two participants, B speaking in A\'s pause, turns where the speech lands on the room timeline', async (t) => {
  const { storage } = await s3rverStorage(t, 'aid-rooms-speech-');
  const h = await startTestApp({ storage, vad: { enabled: true }, rooms: { idleSec: 1 } } as never);
  t.teardown(() => h.close());

  const [a1, b1, a2] = await Promise.all([
    utterance('The quick brown fox jumps over the lazy dog'),
    utterance('Every meeting has a beginning and an end'),
    utterance('Thank you all for coming today'),
  ]);
  const secs = (b: Buffer): number => b.length / 4 / RATE;
  // A: lead, utterance, a pause long enough for B's utterance with a margin either side, utterance.
  // B (joining 2 s in): silence up to MARGIN into A's pause, its utterance.
  const pause = secs(b1) + 2 * MARGIN;
  const bLead = LEAD + secs(a1) + MARGIN - B_JOIN_MS / 1000;
  t.ok(bLead > 0.3, `B's utterance starts ${bLead.toFixed(2)} s after B joins`);
  const A = compose([
    { silence: LEAD, speech: a1 },
    { silence: pause, speech: a2 },
  ]);
  const B = compose([{ silence: bLead, speech: b1 }]);

  const room = `speech-${Date.now()}`;
  const urlA = await egressUrl(h, { roomName: room, trackId: 'TR_A', participant: 'alice' });
  const urlB = await egressUrl(h, { roomName: room, trackId: 'TR_B', participant: 'bob' });
  const t0 = Date.now();
  const [runA, runB] = await Promise.all([simulateEgress({ url: urlA, pcm: A.pcm }), sleep(Math.max(0, t0 + B_JOIN_MS - Date.now())).then(() => simulateEgress({ url: urlB, pcm: B.pcm }))]);
  // when bob really started after alice (a loaded machine starts him late): the placement is held against that
  const joinedMs = runB.startedAtMs! - runA.startedAtMs!;

  const event = await waitFor(() => outboxEvents(h).find((e) => e.type === 'room.completed' && e.room_name === room), 60_000, 'room.completed');
  const m = JSON.parse((await h.app.store.get(event.manifest_key as string)).toString('utf8')) as Manifest;
  t.same(m.tracks.map((x) => x.participant).sort(), ['alice', 'bob'], 'both tracks in the room');
  const track = (p: string) => m.tracks.find((x) => x.participant === p)!;
  t.equal(track('alice').samples, A.pcm.length / 4, "alice's master holds all she sent");
  t.equal(track('bob').samples, B.pcm.length / 4, "bob's master holds all he sent");
  t.ok(Math.abs(track('bob').offset.ms - joinedMs) <= 300, `bob placed where he joined, ${joinedMs} ms in (${track('bob').offset.ms} ms)`);

  // where a track sample lands on the room timeline: its run's roomOffset plus its place in the run
  const roomSample = (p: string, sample: number): number => {
    const runs = track(p).timeline;
    const run = runs.find((r) => sample >= r.start && sample < r.start + r.samples) ?? runs.find((r) => sample === r.start + r.samples)!;
    return run.roomOffset + sample - run.start;
  };
  const roomMs = (p: string, sample: number): number => (roomSample(p, sample) * 1000) / RATE;
  /** As the manifest rounds: to the microsecond. */
  const exactMs = (p: string, sample: number): number => Math.round((roomSample(p, sample) * 1_000_000) / RATE) / 1000;
  const expected: Record<string, { startMs: number; endMs: number }[]> = {
    alice: A.speech.map((s) => ({ startMs: roomMs('alice', s.start), endMs: roomMs('alice', s.end) })),
    bob: B.speech.map((s) => ({ startMs: roomMs('bob', s.start), endMs: roomMs('bob', s.end) })),
  };

  const speakers = m.speakers;
  t.ok(Array.isArray(speakers) && speakers.length > 0, `speaker turns: ${JSON.stringify(speakers)}`);
  t.ok(speakers.every((x, i) => x.endMs > x.startMs && (i === 0 || speakers[i - 1]!.startMs <= x.startMs)), 'turns are non-empty and ordered by start');
  for (const p of ['alice', 'bob']) {
    const turns = speakers.filter((x) => x.participant === p);
    const want = expected[p]!;
    t.ok(turns.length >= 1, `${p} has at least one turn`);
    t.equal(turns.length, want.length, `${p}: one turn per utterance`);
    for (let i = 0; i < want.length; i++) {
      const got = turns[i] ?? { startMs: -1e9, endMs: -1e9 };
      t.ok(Math.abs(got.startMs - want[i]!.startMs) <= TOLERANCE_MS, `${p} turn ${i} starts at ${want[i]!.startMs.toFixed(1)} ms, got ${got.startMs} ms`);
      t.ok(Math.abs(got.endMs - want[i]!.endMs) <= TOLERANCE_MS, `${p} turn ${i} ends at ${want[i]!.endMs.toFixed(1)} ms, got ${got.endMs} ms`);
    }
    // and exactly the track's own speech intervals (from its recording.completed) mapped onto the room
    const own = track(p).speech.map((s) => ({ participant: p, startMs: exactMs(p, s.start), endMs: exactMs(p, s.end) }));
    t.same(turns, own, `${p}: turns are the track's speech intervals placed at its offset`);
  }
  const order = speakers.map((x) => x.participant);
  t.same(order, ['alice', 'bob', 'alice'], 'alice, then bob in her pause, then alice again');
  const [aliceFirst, aliceSecond] = speakers.filter((x) => x.participant === 'alice');
  const bob = speakers.find((x) => x.participant === 'bob');
  t.ok(aliceFirst && aliceSecond && bob && bob.startMs > aliceFirst.endMs && bob.endMs < aliceSecond.startMs, `bob's turn ${bob?.startMs}–${bob?.endMs} ms lies inside alice's pause ${aliceFirst?.endMs}–${aliceSecond?.startMs} ms`);
});
