/**
 * Placement of a room's tracks on one timeline (CONTRACT §8). Room timeline zero is sample 0
 * of the earliest track; every stored run of a track (its `timeline` segment) is placed at the
 * room sample its wall clock gives, so stalls and unfilled mutes stay where they happened
 * instead of being squeezed out. Runs of one track never overlap on the room timeline: a run
 * whose wall clock would put it before the end of the previous one starts where that one ends.
 */

/** A contiguous run of a track's stored samples, as recording.completed gives it. */
export interface TimelineRun {
  /** First sample of the run in the track's master. */
  start: number;
  samples: number;
  /** ISO 8601 wall clock of the run's first sample. */
  wall_clock: string;
}

/** What placement needs to know of one track. */
export interface TrackFacts {
  recordingId: string;
  participant: string;
  trackId: string | null;
  key: string;
  sampleRate: number;
  channels: number;
  /** Samples (frames) in the master. */
  samples: number;
  /** ISO 8601 wall clock of sample 0. */
  startedAt: string;
  /** Stored runs; absent or empty means one run of every sample from `startedAt`. */
  timeline?: TimelineRun[] | undefined;
  mutes: { start: number; end: number }[];
  speech: { start: number; end: number }[];
  driftPpm: number | null;
}

export interface PlacedRun {
  start: number;
  samples: number;
  /** Room sample of the run's first sample. */
  roomOffset: number;
  wallClock: string;
}

export interface PlacedTrack {
  facts: TrackFacts;
  /** Room sample of the track's sample 0. */
  offset: number;
  runs: PlacedRun[];
  /** Room sample just after the track's last stored sample. */
  end: number;
}

export interface RoomPlacement {
  /** Wall clock (ms since the epoch) of room sample 0. */
  zeroMs: number;
  sampleRate: number;
  tracks: PlacedTrack[];
  /** Length of the room timeline in samples. */
  samples: number;
}

/** Places every track; all must share `sampleRate`. */
export function placeTracks(tracks: TrackFacts[], sampleRate: number): RoomPlacement {
  if (tracks.length === 0) return { zeroMs: Date.now(), sampleRate, tracks: [], samples: 0 };
  const zeroMs = Math.min(...tracks.map((t) => Date.parse(t.startedAt)));
  const at = (iso: string): number => Math.max(0, Math.round(((Date.parse(iso) - zeroMs) * sampleRate) / 1000));
  const placed = tracks.map((facts): PlacedTrack => {
    if (facts.sampleRate !== sampleRate) throw new RangeError(`track ${facts.recordingId} is at ${facts.sampleRate} Hz, the room at ${sampleRate} Hz`);
    const offset = at(facts.startedAt);
    const given = (facts.timeline ?? []).filter((r) => r.samples > 0).sort((a, b) => a.start - b.start);
    const source: TimelineRun[] = given.length > 0 ? given : facts.samples > 0 ? [{ start: 0, samples: facts.samples, wall_clock: facts.startedAt }] : [];
    const runs: PlacedRun[] = [];
    let floor = 0;
    for (const r of source) {
      // never beyond the master's samples
      const samples = Math.min(r.samples, facts.samples - r.start);
      if (samples <= 0) continue;
      const wall = Number.isFinite(Date.parse(r.wall_clock)) ? at(r.wall_clock) : offset + r.start;
      const roomOffset = Math.max(wall, floor);
      runs.push({ start: r.start, samples, roomOffset, wallClock: r.wall_clock });
      floor = roomOffset + samples;
    }
    return { facts, offset, runs, end: runs.length > 0 ? floor : offset };
  });
  return { zeroMs, sampleRate, tracks: placed, samples: Math.max(0, ...placed.map((p) => p.end)) };
}

/** The room sample of a track sample (inside a run, or after the run before it when in a gap). */
export function roomSampleOf(track: PlacedTrack, sample: number): number {
  let best = track.offset + sample;
  for (const r of track.runs) {
    if (sample < r.start) break;
    best = r.roomOffset + Math.min(sample - r.start, r.samples);
  }
  return best;
}

/** Milliseconds of `samples` at `rate`, to the microsecond. */
export function samplesToMs(samples: number, rate: number): number {
  return Math.round((samples * 1_000_000) / rate) / 1000;
}

/**
 * Who spoke when: each track's speech intervals on the room timeline, merged per participant
 * where they overlap or touch, ordered by start (then participant).
 */
export function speakers(placement: RoomPlacement): { participant: string; startMs: number; endMs: number }[] {
  const byWho = new Map<string, [number, number][]>();
  for (const t of placement.tracks) {
    const list = byWho.get(t.facts.participant) ?? [];
    for (const s of t.facts.speech) {
      if (s.end <= s.start) continue;
      const a = roomSampleOf(t, s.start);
      const b = roomSampleOf(t, s.end - 1) + 1;
      list.push([a, b]);
    }
    byWho.set(t.facts.participant, list);
  }
  const out: { participant: string; startMs: number; endMs: number; a: number }[] = [];
  for (const [participant, list] of byWho) {
    list.sort((x, y) => x[0] - y[0]);
    let cur: [number, number] | undefined;
    for (const iv of list) {
      if (cur && iv[0] <= cur[1]) cur[1] = Math.max(cur[1], iv[1]);
      else {
        if (cur) out.push({ participant, a: cur[0], startMs: samplesToMs(cur[0], placement.sampleRate), endMs: samplesToMs(cur[1], placement.sampleRate) });
        cur = [iv[0], iv[1]];
      }
    }
    if (cur) out.push({ participant, a: cur[0], startMs: samplesToMs(cur[0], placement.sampleRate), endMs: samplesToMs(cur[1], placement.sampleRate) });
  }
  out.sort((x, y) => x.a - y.a || (x.participant < y.participant ? -1 : x.participant > y.participant ? 1 : 0));
  return out.map(({ participant, startMs, endMs }) => ({ participant, startMs, endMs }));
}
