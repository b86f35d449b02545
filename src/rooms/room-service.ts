import { createHash } from 'node:crypto';
import { isAppError, isRetryable } from '../errors.js';
import { type AudioEvent, roomCompleted, type RoomCompletedPayload } from '../events/types.js';
import type { Logger } from '../observability/logger.js';
import { type ObjectKeys, sanitizeSegment } from '../storage/keys.js';
import { GroupCommit } from '../storage/group-commit.js';
import type { ObjectStore } from '../storage/object-store.js';
import { type MixLaw, mixSampleFn, plainSample } from './mix-law.js';
import { type MixInput, mixToStore, readWavLayout } from './mixer.js';
import { type PlacedTrack, placeTracks, type RoomPlacement, samplesToMs, speakers, type TimelineRun, type TrackFacts } from './placement.js';
import type { RoomLease } from './room-lease.js';

/**
 * Rooms (CONTRACT §8, README "Rooms"). Every host writes what it knows of its own tracks into
 * the object store — one small record per track under `<prefix>rooms-state/<tenant>/<room>/tracks/`,
 * written when the recording starts, refreshed while it runs and rewritten with the completion's
 * timeline, speech and drift when it ends — plus a `finished.json` marker when LiveKit says the
 * room finished. Any host that has seen a track of the room re-examines it from time to time;
 * the examination runs under the room's lease (Redis when several hosts share the store), so
 * exactly one host decides the session is over, mixes it, writes its outputs and its session
 * record, appends `room.completed` and removes the session's track records.
 */

export interface RoomsConfig {
  idleSec: number;
  leaseSec: number;
  trackWaitSec: number;
  staleSec: number;
  dual: { left?: string | undefined; right?: string | undefined };
  law: MixLaw;
  partBytes: number;
  windowSec: number;
}

export interface RoomServiceOptions {
  store: ObjectStore;
  keys: ObjectKeys;
  events: { append(event: AudioEvent): Promise<void> };
  lease: RoomLease;
  config: RoomsConfig;
  presign: (key: string) => Promise<{ url: string; expiresAt: Date }>;
  logger: Logger;
  now?: () => number;
}

/** What the store holds of one track of a room until its session is mixed. */
export interface RoomTrackRecord {
  recordingId: string;
  tenant: string;
  roomName: string;
  participant: string;
  trackId: string | null;
  key: string;
  sampleRate: number;
  channels: number;
  state: 'live' | 'completed' | 'failed';
  /** Wall clock of sample 0 (the completion's `started_at`, else the recording's start). */
  startedAt: string;
  /** Last time the host running it said it is alive. */
  seenAt: string;
  endedAt: string | null;
  timeline?: TimelineRun[];
  mutes?: { start: number; end: number }[];
  speech?: { start: number; end: number }[];
  driftPpm?: number | null;
  /** Output channel of dual.wav claimed by the egress URL. */
  channel?: 'left' | 'right';
}

/** A mixed session, as `GET /v1/rooms` shows it and as `<prefix>catalog/room-sessions/` stores it. */
export interface RoomSessionRecord {
  sessionId: string;
  tenant: string;
  roomName: string;
  state: 'completed';
  startedAt: string;
  endedAt: string;
  completedAt: string;
  sampleRate: number;
  samples: number;
  durationSec: number;
  tracks: { recordingId: string; participant: string; trackId: string | null; offsetMs: number; durationSec: number }[];
  manifestKey: string;
  mixKey: string;
  dualKey: string | null;
  eventId: string;
}

interface Watch {
  tenant: string;
  roomName: string;
  timer: NodeJS.Timeout | undefined;
  due: number;
  running: Promise<void> | undefined;
}

type Verdict = { kind: 'done' } | { kind: 'wait'; ms: number };

export class RoomService {
  private readonly o: RoomServiceOptions;
  private readonly cfg: RoomsConfig;
  private readonly now: () => number;
  private readonly watches = new Map<string, Watch>();
  /** Live tracks of this host, refreshed in the store while they run. */
  private readonly local = new Map<string, RoomTrackRecord>();
  private readonly writing = new Map<string, Promise<void>>();
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Track records of the same moment (a meeting's tracks starting, ending, refreshed) go to the store together. */
  private readonly records: GroupCommit;
  /**
   * The last record this host stored of each of its tracks, by key. Only the host that records
   * a track writes its record, so an examination reads from the store only the other hosts'
   * (a room on one host: none; it was one GET per track per examination).
   */
  private readonly written = new Map<string, RoomTrackRecord>();
  /**
   * Records of this host on their way to the store, by key. A listing can show an object before
   * its put has answered (the store has it; the answer is still in flight, or waits in the group
   * commit): the examination takes the record being written rather than reading it back.
   */
  private readonly storing = new Map<string, RoomTrackRecord>();

  constructor(options: RoomServiceOptions) {
    this.o = options;
    this.records = new GroupCommit(options.store);
    this.cfg = options.config;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    const every = Math.max(1000, (this.cfg.staleSec * 1000) / 4);
    this.heartbeat = setInterval(() => this.refreshLive(), every);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const w of this.watches.values()) if (w.timer) clearTimeout(w.timer);
    await Promise.allSettled([...this.watches.values()].map((w) => w.running));
    while (this.writing.size > 0) await Promise.allSettled([...this.writing.values()]);
    await this.o.lease.stop();
  }

  // ---- keys ----

  private stateFolder(tenant: string, roomName: string): string {
    return `${this.o.keys.prefix}rooms-state/${sanitizeSegment(tenant)}/${sanitizeSegment(roomName)}/`;
  }

  private trackKey(tenant: string, roomName: string, recordingId: string): string {
    return `${this.stateFolder(tenant, roomName)}tracks/${sanitizeSegment(recordingId)}.json`;
  }

  /** Folder of one session's outputs: `rooms/<tenant>/<roomName>/<sessionId>/`. */
  outputFolder(tenant: string, roomName: string, sessionId: string): string {
    return `${this.o.keys.prefix}rooms/${sanitizeSegment(tenant)}/${sanitizeSegment(roomName)}/${sanitizeSegment(sessionId)}/`;
  }

  sessionKey(tenant: string, sessionId: string): string {
    return `${this.o.keys.prefix}catalog/room-sessions/${sanitizeSegment(tenant)}/${sanitizeSegment(sessionId)}.json`;
  }

  indexFolder(tenant: string, roomName: string): string {
    return `${this.o.keys.prefix}catalog/room-index/${sanitizeSegment(tenant)}/${sanitizeSegment(roomName)}/`;
  }

  // ---- what the recordings say ----

  /** Takes every event of this host's recordings (started, completed, failed) and remembers the room's tracks. */
  observe(event: AudioEvent, extra: { channel?: 'left' | 'right' | undefined } = {}): void {
    if (this.stopped) return;
    if (event.type === 'recording.started') {
      if (event.platform !== 'livekit') return;
      const rec: RoomTrackRecord = {
        recordingId: event.recording_id,
        tenant: event.tenant_id,
        roomName: event.room_name,
        participant: event.user_id,
        trackId: event.track_id,
        key: event.s3_key_master,
        sampleRate: event.sample_rate,
        channels: event.channels,
        state: 'live',
        startedAt: event.started_at,
        seenAt: new Date(this.now()).toISOString(),
        endedAt: null,
      };
      if (extra.channel) rec.channel = extra.channel;
      this.local.set(rec.recordingId, rec);
      this.enqueue(rec.recordingId, () => this.putTrack(rec));
      this.watch(rec.tenant, rec.roomName, this.cfg.leaseSec * 1000);
      return;
    }
    if (event.type !== 'recording.completed' && event.type !== 'recording.failed') return;
    if (event.platform !== 'livekit' || !event.room_name) return;
    const tenant = event.tenant_id;
    const roomName = event.room_name;
    const id = event.recording_id;
    const known = this.local.get(id);
    this.local.delete(id);
    this.enqueue(id, async () => {
      const prior = known ?? (await this.getJson<RoomTrackRecord>(this.trackKey(tenant, roomName, id)));
      const durationSec = event.duration_sec;
      const endedAt = event.completed_at;
      const sample0 = event.started_at ?? undefined;
      const rec: RoomTrackRecord = {
        recordingId: id,
        tenant,
        roomName,
        participant: event.user_id,
        trackId: event.track_id ?? null,
        key: event.s3_key_master ?? prior?.key ?? '',
        sampleRate: prior?.sampleRate ?? 0,
        channels: prior?.channels ?? 1,
        state: event.type === 'recording.completed' ? 'completed' : 'failed',
        startedAt: sample0 ?? prior?.startedAt ?? new Date(Date.parse(endedAt) - durationSec * 1000).toISOString(),
        seenAt: new Date(this.now()).toISOString(),
        endedAt,
        mutes: event.mute_intervals.map((m) => ({ start: m.start_sample, end: m.end_sample })),
        driftPpm: event.drift_ppm ?? null,
        speech: (event.speech ?? []).map((s) => ({ start: s.start, end: s.end })),
      };
      if (event.timeline) rec.timeline = event.timeline.map((r) => ({ start: r.start, samples: r.samples, wall_clock: r.wall_clock }));
      if (prior?.channel) rec.channel = prior.channel;
      await this.putTrack(rec);
    });
    const w = this.watch(tenant, roomName, this.cfg.idleSec * 1000);
    // examine once the record is written
    void this.writing.get(id)?.finally(() => this.schedule(w, this.cfg.idleSec * 1000));
  }

  /** LiveKit's room_finished (tenant `*`: every tenant's room of that name this host has seen). */
  roomFinished(tenant: string, roomName: string): void {
    if (this.stopped) return;
    for (const w of this.watches.values()) {
      if (w.roomName !== roomName || (tenant !== '*' && tenant !== w.tenant)) continue;
      const at = new Date(this.now()).toISOString();
      void this.o.store
        .put(`${this.stateFolder(w.tenant, w.roomName)}finished.json`, Buffer.from(JSON.stringify({ at })), { contentType: 'application/json', tags: { tenant: w.tenant, source: 'livekit' } })
        .catch((err: unknown) => this.o.logger.error({ err, tenant: w.tenant, roomName }, 'room finished marker not written: the session ends after the idle window'))
        .finally(() => this.schedule(w, 0));
    }
  }

  private enqueue(id: string, fn: () => Promise<void>): void {
    const tail = (this.writing.get(id) ?? Promise.resolve()).then(fn).catch((err: unknown) => this.o.logger.error({ err, recordingId: id }, 'room track record not written'));
    this.writing.set(id, tail);
    void tail.finally(() => {
      if (this.writing.get(id) === tail) this.writing.delete(id);
    });
  }

  private async putTrack(rec: RoomTrackRecord): Promise<void> {
    const key = this.trackKey(rec.tenant, rec.roomName, rec.recordingId);
    const snapshot = { ...rec };
    this.storing.set(key, snapshot);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.records.put({ key, body: Buffer.from(JSON.stringify(snapshot)), options: { contentType: 'application/json', tags: { tenant: rec.tenant, source: 'livekit' } } });
          this.written.set(key, snapshot);
          return;
        } catch (err) {
          if (attempt >= 3 || !isRetryable(err)) throw err;
          await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
        }
      }
    } finally {
      // writes of one track are serialized (enqueue): this is the only one in flight
      this.storing.delete(key);
    }
  }

  private refreshLive(): void {
    const at = new Date(this.now()).toISOString();
    for (const rec of this.local.values()) {
      rec.seenAt = at;
      const snapshot = { ...rec };
      this.enqueue(rec.recordingId, async () => {
        // a completion written meanwhile wins
        if (this.local.has(snapshot.recordingId)) await this.putTrack(snapshot);
      });
    }
  }

  // ---- scheduling ----

  private watch(tenant: string, roomName: string, delayMs: number): Watch {
    const k = `${tenant}\u0000${roomName}`;
    let w = this.watches.get(k);
    if (!w) {
      w = { tenant, roomName, timer: undefined, due: Infinity, running: undefined };
      this.watches.set(k, w);
      this.schedule(w, delayMs);
    }
    return w;
  }

  /** Examines the room in `ms` (or sooner when already due sooner). */
  private schedule(w: Watch, ms: number): void {
    if (this.stopped) return;
    const due = this.now() + Math.max(0, ms);
    if (w.timer && w.due <= due) return;
    if (w.timer) clearTimeout(w.timer);
    w.due = due;
    w.timer = setTimeout(() => {
      w.timer = undefined;
      w.due = Infinity;
      if (w.running) {
        void w.running.finally(() => this.schedule(w, 0));
        return;
      }
      w.running = this.examine(w).finally(() => (w.running = undefined));
    }, Math.max(0, ms));
    w.timer.unref?.();
  }

  private async examine(w: Watch): Promise<void> {
    let verdict: Verdict;
    try {
      verdict = await this.underLease(w, (check) => this.decide(w, check));
    } catch (err) {
      this.o.logger.error({ err, tenant: w.tenant, roomName: w.roomName }, 'room examination failed: retrying');
      verdict = { kind: 'wait', ms: Math.min(this.cfg.idleSec, this.cfg.leaseSec) * 1000 };
    }
    if (verdict.kind === 'done') {
      if (!w.timer) this.watches.delete(`${w.tenant}\u0000${w.roomName}`);
      return;
    }
    this.schedule(w, verdict.ms);
  }

  /** Runs `fn` holding the room's lease, renewing it; another holder means: look again later. */
  private async underLease(w: Watch, fn: (check: () => void) => Promise<Verdict>): Promise<Verdict> {
    const name = `${w.tenant}\u0000${w.roomName}`;
    const ttl = this.cfg.leaseSec * 1000;
    const token = await this.o.lease.acquire(name, ttl).catch((err: unknown) => {
      this.o.logger.warn({ err, tenant: w.tenant, roomName: w.roomName }, 'room lease not reachable: looking again later');
      return null;
    });
    if (token === null) return { kind: 'wait', ms: ttl };
    let lost = false;
    const renew = setInterval(() => {
      this.o.lease.renew(name, token, ttl).then(
        (ok) => (lost ||= !ok),
        () => (lost = true),
      );
    }, ttl / 3);
    try {
      return await fn(() => {
        if (lost) throw new Error('the room lease was lost');
        if (this.stopped) throw new Error('the daemon is stopping');
      });
    } finally {
      clearInterval(renew);
      if (!lost) await this.o.lease.release(name, token).catch(() => undefined);
    }
  }

  /** Reads the room's pending tracks and decides: nothing to do, wait, or mix a session. */
  private async decide(w: Watch, check: () => void): Promise<Verdict> {
    const folder = this.stateFolder(w.tenant, w.roomName);
    const records: RoomTrackRecord[] = [];
    const listed = new Set<string>();
    for await (const item of this.o.store.list(`${folder}tracks/`)) {
      listed.add(item.key);
      const r = this.storing.get(item.key) ?? this.written.get(item.key) ?? (await this.getJson<RoomTrackRecord>(item.key));
      if (r && r.tenant === w.tenant && r.roomName === w.roomName) records.push(r);
    }
    // records of this host's tracks that another host's session consumed (and deleted)
    for (const key of this.written.keys()) if (key.startsWith(`${folder}tracks/`) && !listed.has(key)) this.written.delete(key);
    if (records.length === 0) return { kind: 'done' };
    const marker = await this.getJson<{ at: string }>(`${folder}finished.json`);
    const now = this.now();
    const idleMs = this.cfg.idleSec * 1000;
    const staleMs = this.cfg.staleSec * 1000;
    const alive = (r: RoomTrackRecord): boolean => r.state === 'live' && now - Date.parse(r.seenAt) <= staleMs;
    const endOf = (r: RoomTrackRecord): number => (r.state === 'live' ? (alive(r) ? now : Date.parse(r.seenAt)) : Date.parse(r.endedAt ?? r.seenAt));
    records.sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt) || (a.recordingId < b.recordingId ? -1 : 1));
    // the first session: tracks until a gap longer than the idle window
    const group: RoomTrackRecord[] = [];
    let groupEnd = -Infinity;
    for (const r of records) {
      if (group.length > 0 && Date.parse(r.startedAt) > groupEnd + idleMs) break;
      group.push(r);
      groupEnd = Math.max(groupEnd, endOf(r));
    }
    const finishedAt = marker ? Date.parse(marker.at) : NaN;
    let members = group;
    if (Number.isFinite(finishedAt) && Date.parse(group[0]!.startedAt) <= finishedAt) {
      members = group.filter((r) => Date.parse(r.startedAt) <= finishedAt);
      if (members.some(alive) && now < finishedAt + this.cfg.trackWaitSec * 1000) return { kind: 'wait', ms: 1000 };
    } else {
      if (group.some(alive)) return { kind: 'wait', ms: Math.max(idleMs, this.cfg.leaseSec * 1000) };
      if (now < groupEnd + idleMs) return { kind: 'wait', ms: groupEnd + idleMs - now };
    }
    await this.closeSession(w, members, marker !== null && Number.isFinite(finishedAt), check);
    return { kind: 'wait', ms: 0 };
  }

  /** Mixes one session (or finishes the announcement of one mixed before a crash), then forgets its tracks. */
  private async closeSession(w: Watch, members: RoomTrackRecord[], consumedMarker: boolean, check: () => void): Promise<void> {
    const { tenant, roomName } = w;
    const log = this.o.logger.child({ tenant, roomName });
    const sessionId = derivedUuid(`${tenant}\u0000${roomName}\u0000${members[0]!.recordingId}`);
    let record = await this.getJson<RoomSessionRecord>(this.sessionKey(tenant, sessionId));
    if (!record) {
      record = await this.mix(tenant, roomName, sessionId, members, check, log);
      check();
      await this.o.store.put(this.sessionKey(tenant, sessionId), Buffer.from(JSON.stringify(record)), { contentType: 'application/json', tags: { tenant, source: 'livekit' } });
      const stamp = record.startedAt.replace(/[-:.]/g, '');
      await this.o.store.put(this.indexFolder(tenant, roomName) + sanitizeSegment(`${stamp}_${sessionId}`), Buffer.from(sessionId), { contentType: 'application/octet-stream', tags: { tenant, source: 'livekit' } });
    } else {
      log.warn({ sessionId }, 'room session already mixed (a previous holder stopped before tidying up): announcing it again with the same event id');
    }
    await this.o.events.append(await this.completedEvent(record));
    for (const m of members) {
      const key = this.trackKey(tenant, roomName, m.recordingId);
      this.written.delete(key);
      await this.o.store.delete(key).catch(() => undefined);
    }
    if (consumedMarker) await this.o.store.delete(`${this.stateFolder(tenant, roomName)}finished.json`).catch(() => undefined);
    log.info({ sessionId, tracks: record.tracks.length, durationSec: record.durationSec, mixKey: record.mixKey, dualKey: record.dualKey }, 'room session completed');
  }

  private async mix(tenant: string, roomName: string, sessionId: string, members: RoomTrackRecord[], check: () => void, log: Logger): Promise<RoomSessionRecord> {
    const usable = members.filter((m) => m.state === 'completed' && m.key !== '');
    // the room rate: the masters' rate (the most common one, should they differ)
    const rates = new Map<number, number>();
    const facts: TrackFacts[] = [];
    for (const m of usable) {
      let layout;
      try {
        layout = await readWavLayout(this.o.store, m.key);
      } catch (err) {
        log.error({ err, recordingId: m.recordingId, key: m.key }, 'room track left out: its master cannot be read');
        continue;
      }
      const head = await this.o.store.head(m.key);
      const sampleRate = Number(head?.metadata['sample-rate']) || m.sampleRate;
      facts.push({
        recordingId: m.recordingId,
        participant: m.participant,
        trackId: m.trackId,
        key: m.key,
        sampleRate,
        channels: layout.channels,
        samples: Math.floor(layout.dataBytes / (layout.channels * 2)),
        startedAt: m.startedAt,
        timeline: m.timeline,
        mutes: m.mutes ?? [],
        speech: m.speech ?? [],
        driftPpm: m.driftPpm ?? null,
      });
      rates.set(sampleRate, (rates.get(sampleRate) ?? 0) + 1);
    }
    const rate = [...rates.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 48000;
    const placement = placeTracks(facts.filter((f) => f.sampleRate === rate), rate);
    const folder = this.outputFolder(tenant, roomName, sessionId);
    const mixKey = `${folder}mix.wav`;
    const metadata = { tenant, source: 'livekit', 'session-id': sessionId, 'room-name': encodeURIComponent(roomName) };
    const common = { store: this.o.store, samples: placement.samples, sampleRate: rate, partBytes: this.cfg.partBytes, windowSamples: Math.round(this.cfg.windowSec * rate), metadata, check };
    const mixed = await mixToStore({ ...common, key: mixKey, outChannels: 1, combine: mixSampleFn(this.cfg.law), inputs: placement.tracks.map((t) => mixInput(t, 0)) });
    let dualKey: string | null = null;
    const pair = this.dualPair(placement, members);
    if (pair) {
      dualKey = `${folder}dual.wav`;
      const inputs = placement.tracks.flatMap((t) => (t.facts.participant === pair.left ? [mixInput(t, 0)] : t.facts.participant === pair.right ? [mixInput(t, 1)] : []));
      await mixToStore({ ...common, key: dualKey, outChannels: 2, combine: plainSample, inputs });
    }
    check();
    const manifest = buildManifest({ sessionId, tenant, roomName, placement, mixKey, mixSamples: mixed.samples, dualKey });
    const manifestKey = `${folder}manifest.json`;
    await this.o.store.put(manifestKey, Buffer.from(JSON.stringify(manifest, null, 2)), { contentType: 'application/json', metadata });
    log.info({ sessionId, tracks: placement.tracks.length, samples: placement.samples, reads: mixed.reads, maxSliceMs: Math.round(mixed.maxSliceMs * 10) / 10 }, 'room mixed');
    return {
      sessionId,
      tenant,
      roomName,
      state: 'completed',
      startedAt: manifest.startedAt,
      endedAt: manifest.endedAt,
      completedAt: new Date(this.now()).toISOString(),
      sampleRate: rate,
      samples: placement.samples,
      durationSec: Math.round((placement.samples / rate) * 1000) / 1000,
      tracks: manifest.tracks.map((t) => ({ recordingId: t.recordingId, participant: t.participant, trackId: t.trackId, offsetMs: t.offset.ms, durationSec: t.durationSec })),
      manifestKey,
      mixKey,
      dualKey,
      eventId: derivedUuid(`room.completed\u0000${tenant}\u0000${sessionId}`),
    };
  }

  /** The two participants of dual.wav: from the egress URLs' `channel` claims, else from `rooms.dual`. */
  private dualPair(placement: RoomPlacement, members: RoomTrackRecord[]): { left: string; right: string } | null {
    const present = new Set(placement.tracks.map((t) => t.facts.participant));
    const claimed = (side: 'left' | 'right'): string | undefined => members.find((m) => m.channel === side && present.has(m.participant))?.participant;
    const left = claimed('left') ?? this.cfg.dual.left;
    const right = claimed('right') ?? this.cfg.dual.right;
    if (!left || !right || left === right || !present.has(left) || !present.has(right)) return null;
    return { left, right };
  }

  private async completedEvent(r: RoomSessionRecord): Promise<AudioEvent> {
    const link = await this.o.presign(r.manifestKey).catch(() => null);
    const mixLink = await this.o.presign(r.mixKey).catch(() => null);
    const dualLink = r.dualKey ? await this.o.presign(r.dualKey).catch(() => null) : null;
    const payload: RoomCompletedPayload = {
      session_id: r.sessionId,
      room_name: r.roomName,
      tenant: r.tenant,
      started_at: r.startedAt,
      ended_at: r.endedAt,
      duration_sec: r.durationSec,
      sample_rate: r.sampleRate,
      tracks: r.tracks.map((t) => ({ recording_id: t.recordingId, participant: t.participant, track_id: t.trackId, offset_ms: t.offsetMs, duration_sec: t.durationSec })),
      manifest_key: r.manifestKey,
      mix_key: r.mixKey,
      dual_key: r.dualKey,
      url: link?.url ?? null,
      mix_url: mixLink?.url ?? null,
      dual_url: dualLink?.url ?? null,
      url_expires_at: link?.expiresAt.toISOString() ?? null,
    };
    return roomCompleted(payload, { id: r.eventId, occurredAt: r.completedAt });
  }

  // ---- reads for the API ----

  async getSession(tenant: string, sessionId: string): Promise<RoomSessionRecord | null> {
    const r = await this.getJson<RoomSessionRecord>(this.sessionKey(tenant, sessionId));
    return r && r.tenant === tenant && r.sessionId === sessionId ? r : null;
  }

  async listSessions(tenant: string, roomName: string, limit: number): Promise<{ sessions: RoomSessionRecord[]; truncated: boolean }> {
    const folder = this.indexFolder(tenant, roomName);
    const ids: string[] = [];
    let truncated = false;
    for await (const entry of this.o.store.list(folder)) {
      const name = entry.key.slice(folder.length);
      const cut = name.indexOf('_');
      if (cut < 0 || name.includes('/')) continue;
      if (ids.length === limit) {
        truncated = true;
        break;
      }
      ids.push(name.slice(cut + 1));
    }
    const found = await Promise.all(ids.map((id) => this.getSession(tenant, id)));
    return { sessions: found.filter((r): r is RoomSessionRecord => r !== null && r.roomName === roomName), truncated };
  }

  async getJson<T>(key: string): Promise<T | null> {
    try {
      return JSON.parse((await this.o.store.get(key)).toString('utf8')) as T;
    } catch (err) {
      if (isAppError(err, 'NOT_FOUND') || err instanceof SyntaxError) return null;
      throw err;
    }
  }
}

function mixInput(t: PlacedTrack, out: number): MixInput {
  return { key: t.facts.key, out, runs: t.runs.map((r) => ({ start: r.start, samples: r.samples, roomOffset: r.roomOffset })) };
}

/** The manifest of CONTRACT §8. */
export function buildManifest(a: { sessionId: string; tenant: string; roomName: string; placement: RoomPlacement; mixKey: string; mixSamples: number; dualKey: string | null }) {
  const p = a.placement;
  const rate = p.sampleRate;
  return {
    sessionId: a.sessionId,
    tenant: a.tenant,
    roomName: a.roomName,
    startedAt: new Date(p.zeroMs).toISOString(),
    endedAt: new Date(p.zeroMs + Math.round((p.samples * 1000) / rate)).toISOString(),
    sampleRate: rate,
    tracks: p.tracks.map((t) => ({
      recordingId: t.facts.recordingId,
      participant: t.facts.participant,
      trackId: t.facts.trackId,
      key: t.facts.key,
      sampleRate: t.facts.sampleRate,
      offset: { samples: t.offset, ms: samplesToMs(t.offset, rate) },
      samples: t.facts.samples,
      durationSec: Math.round((t.facts.samples / rate) * 1000) / 1000,
      timeline: t.runs.map((r) => ({ start: r.start, samples: r.samples, roomOffset: r.roomOffset, wallClock: r.wallClock })),
      mutes: t.facts.mutes,
      speech: t.facts.speech,
      driftPpm: t.facts.driftPpm,
    })),
    speakers: speakers(p),
    mix: { key: a.mixKey, samples: a.mixSamples },
    dual: a.dualKey ? { key: a.dualKey } : null,
  };
}

/** A UUID-shaped id derived from `seed` (the same session always gets the same id). */
export function derivedUuid(seed: string): string {
  const h = createHash('sha256').update(seed, 'utf8').digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h.slice(16, 17), 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
