/**
 * The reference room mixer of the tests, written from README "Rooms" (the mix law), not from
 * src/rooms: one whole-array pass, per output sample.
 */
export interface RefTrack {
  /** Mono 16-bit samples of the master. */
  pcm: Int16Array;
  runs: { start: number; samples: number; roomOffset: number }[];
}

export function referenceMix(tracks: RefTrack[], roomSamples: number, headroomDb = 6, knee = 0.5): Int16Array {
  const sums = new Float64Array(roomSamples);
  for (const t of tracks) {
    for (const r of t.runs) {
      for (let i = 0; i < r.samples; i++) sums[r.roomOffset + i]! += t.pcm[r.start + i]!;
    }
  }
  const g = 10 ** (-headroomDb / 20);
  const out = new Int16Array(roomSamples);
  for (let i = 0; i < roomSamples; i++) {
    const y = (g * sums[i]!) / 32768;
    const z = Math.abs(y) <= knee ? y : Math.sign(y) * (knee + (1 - knee) * Math.tanh((Math.abs(y) - knee) / (1 - knee)));
    out[i] = Math.round(z * 32767);
  }
  return out;
}

/** One participant placed alone (a channel of dual.wav): its samples where its runs are, 0 elsewhere. */
export function referencePlace(track: RefTrack, roomSamples: number): Int16Array {
  const out = new Int16Array(roomSamples);
  for (const r of track.runs) out.set(track.pcm.subarray(r.start, r.start + r.samples), r.roomOffset);
  return out;
}

/** Seeded speech-like noise bursts: loud enough that sums of three hit the limiter. */
export function burstPcm(samples: number, seed: number, amplitude = 24000): Int16Array {
  let x = seed >>> 0;
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const env = Math.abs(Math.sin((i / samples) * Math.PI * 7));
    out[i] = Math.round((((x >>> 16) / 65535) * 2 - 1) * amplitude * env);
  }
  return out;
}
