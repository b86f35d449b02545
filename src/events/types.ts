import { randomUUID } from 'node:crypto';

/**
 * Event envelope and payloads. The envelope is flat: `id`, `type`, `occurredAt`, `tenant` and
 * the payload fields share one JSON object, so seed consumers that read `recording_id` or
 * `s3_key_master` at the top level keep working. Envelope fields are camelCase (the contract),
 * payload fields are snake_case (the seed's completion event). docs/events.md is the reference.
 */

export const RECORDING_EVENT_TYPES = [
  'recording.started',
  'recording.chunk',
  'recording.completed',
  'recording.failed',
  'recording.speech',
] as const;
export const VOICENOTE_EVENT_TYPES = ['voicenote.stored', 'voicenote.rejected'] as const;
export const ROOM_EVENT_TYPES = ['room.completed'] as const;
/** Monitoring-only types: go to the monitoring webhook, not to the main one. */
export const MONITORING_EVENT_TYPES = ['queue.error', 'queue.stats', 'filter.applied'] as const;
export const EVENT_TYPES = [
  ...RECORDING_EVENT_TYPES,
  ...VOICENOTE_EVENT_TYPES,
  ...ROOM_EVENT_TYPES,
  ...MONITORING_EVENT_TYPES,
] as const;

export type EventType = (typeof EVENT_TYPES)[number];
export type MonitoringEventType = (typeof MONITORING_EVENT_TYPES)[number];

/** Tenant used by events that concern the daemon rather than one tenant (queue.stats). */
export const SYSTEM_TENANT = '_system';

export interface EventEnvelope<T extends EventType = EventType> {
  /** UUID v4; also the AMQP `messageId` and the `X-Webhook-Id` header. */
  id: string;
  type: T;
  /** ISO 8601 UTC instant at which the fact happened. */
  occurredAt: string;
  tenant: string;
}

export type Platform = 'livekit' | 'whatsapp';
export type EndReason = 'normal' | 'aborted' | 'room_finished' | 'shutdown' | 'timeout';

export interface MuteInterval {
  /** Offsets in the recording's output timeline, derived from sample counts. */
  start_sec: number;
  end_sec: number;
  start_sample: number;
  end_sample: number;
  /** Wall-clock ISO 8601 instants of the mute and unmute frames. */
  started_at: string;
  ended_at: string;
}

/** A contiguous run of stored samples (CONTRACT §8): `start` in the master's samples. */
export interface TimelineSegment {
  start: number;
  samples: number;
  /** ISO 8601 wall clock of the run's first sample. */
  wall_clock: string;
}

/** A speech interval in the master's samples, `end` exclusive. */
export interface SpeechInterval {
  start: number;
  end: number;
}

export interface RecordingStartedPayload {
  recording_id: string;
  tenant_id: string;
  user_id: string;
  platform: Platform;
  room_name: string;
  meeting_id: string | null;
  track_id: string | null;
  meeting_title?: string;
  meeting_url?: string;
  s3_key_master: string;
  sample_rate: number;
  channels: number;
  started_at: string;
}

export interface RecordingChunkPayload {
  recording_id: string;
  tenant_id: string;
  user_id: string;
  /** 0-based chunk number within the recording. */
  seq: number;
  /** Object key of the chunk, null when per-chunk objects are off. */
  s3_key: string | null;
  start_sec: number;
  duration_sec: number;
  start_sample: number;
  sample_count: number;
  size_bytes: number;
  sample_rate: number;
  channels: number;
  url: string | null;
  url_expires_at: string | null;
}

/** Shared by recording.completed and recording.failed (the seed's completion shape). */
export interface RecordingEndPayload {
  recording_id: string;
  status: 'completed' | 'failed';
  s3_key_master: string | null;
  tenant_id: string;
  user_id: string;
  platform: Platform;
  meeting_title?: string;
  meeting_url?: string;
  room_name?: string;
  meeting_id?: string | null;
  track_id?: string | null;
  duration_sec: number;
  size_bytes: number;
  completed_at: string;
  error: string | null;
  end_reason: EndReason;
  mute_intervals: MuteInterval[];
  dropped_bytes: number;
  /** Wall clock of stored sample 0; null when unknown (a master recovered after a crash, nothing stored). */
  started_at: string | null;
  /** Contiguous stored runs with their wall clocks; null when unknown (recovered master). */
  timeline: TimelineSegment[] | null;
  /** Sender clock vs host clock, ppm (positive: the sender runs fast); null without enough audio. */
  drift_ppm: number | null;
  /** Speech intervals found by the VAD; null when it did not run (off, failed, recovered master). */
  speech: SpeechInterval[] | null;
  url: string | null;
  url_expires_at: string | null;
}

/** A live speech edge of a recording (optional, `vad.liveEvents`). */
export interface RecordingSpeechPayload {
  recording_id: string;
  tenant_id: string;
  user_id: string;
  room_name: string;
  track_id: string | null;
  /** `on`: speech started at `offset`; `off`: it ended at `offset` (exclusive). */
  speech: 'on' | 'off';
  /** In the master's output samples (the same timeline as `speech` in recording.completed). */
  offset: number;
  offset_sec: number;
  sample_rate: number;
}

export interface VoiceNoteStoredPayload {
  voicenote_id: string;
  tenant_id: string;
  platform: 'whatsapp';
  instance: string;
  chat_id: string;
  message_id: string;
  key: string;
  original_key: string | null;
  url: string;
  url_expires_at: string;
  duration_sec: number;
  sample_rate: number;
  channels: number;
  size_bytes: number;
  /** Sniffed source format, e.g. `ogg-opus`, `m4a`, `mp3`, `amr`. */
  format: string;
  ptt: boolean | null;
  message_timestamp: string | null;
  stored_at: string;
}

export interface VoiceNoteRejectedPayload {
  tenant_id: string;
  platform: 'whatsapp';
  instance: string;
  chat_id: string | null;
  message_id: string | null;
  /** Stable error code from errors.ts, e.g. DURATION_TOO_SHORT. */
  code: string;
  reason: string;
  duration_sec: number | null;
}

/** One track of a mixed room session, as room.completed summarizes it. */
export interface RoomCompletedTrack {
  recording_id: string;
  participant: string;
  track_id: string | null;
  /** Offset of the track's sample 0 on the room timeline. */
  offset_ms: number;
  duration_sec: number;
}

/** A room session mixed (CONTRACT §8): its outputs and the manifest's summary. */
export interface RoomCompletedPayload {
  session_id: string;
  room_name: string;
  tenant: string;
  /** Wall clock of room sample 0 and of the end of the room timeline. */
  started_at: string;
  ended_at: string;
  duration_sec: number;
  sample_rate: number;
  tracks: RoomCompletedTrack[];
  manifest_key: string;
  mix_key: string;
  dual_key: string | null;
  /** Presigned GET of the manifest. */
  url: string | null;
  mix_url: string | null;
  dual_url: string | null;
  url_expires_at: string | null;
}

export interface QueueErrorPayload {
  /** Sink that gave up, e.g. `webhook`. */
  sink: string;
  failed_event_id: string;
  failed_event_type: string;
  attempts: number;
  error: string;
  /** HTTP status of the last answer, when there was one. */
  status: number | null;
  gave_up_at: string;
}

export interface QueueStatsSink {
  name: string;
  pending: number;
  ready: boolean;
  delivered: number;
  retries: number;
  last_error: string | null;
}

export interface QueueStatsPayload {
  host: string;
  last_seq: number;
  segments: number;
  sinks: QueueStatsSink[];
}

export interface FilterAppliedPayload {
  tenant_id: string;
  instance: string;
  filter: 'duration';
  action: 'rejected';
  reason: string;
  duration_sec: number | null;
  min_sec: number;
  max_sec: number;
  chat_id: string | null;
  message_id: string | null;
}

export interface EventPayloads {
  'recording.started': RecordingStartedPayload;
  'recording.chunk': RecordingChunkPayload;
  'recording.completed': RecordingEndPayload & { status: 'completed' };
  'recording.failed': RecordingEndPayload & { status: 'failed' };
  'recording.speech': RecordingSpeechPayload;
  'voicenote.stored': VoiceNoteStoredPayload;
  'voicenote.rejected': VoiceNoteRejectedPayload;
  'room.completed': RoomCompletedPayload;
  'queue.error': QueueErrorPayload;
  'queue.stats': QueueStatsPayload;
  'filter.applied': FilterAppliedPayload;
}

export type EventOf<T extends EventType> = EventEnvelope<T> & EventPayloads[T];
/** Any event the daemon emits. */
export type AudioEvent = { [T in EventType]: EventOf<T> }[EventType];

/** Overrides for deterministic ids and times (tests, replays). */
export interface EventMeta {
  id?: string;
  occurredAt?: Date | string;
}

function iso(at: Date | string | undefined): string {
  if (at === undefined) return new Date().toISOString();
  return typeof at === 'string' ? new Date(at).toISOString() : at.toISOString();
}

/** Generic builder: envelope first so the JSON reads id, type, time, tenant, then payload. */
export function makeEvent<T extends EventType>(
  type: T,
  tenant: string,
  payload: EventPayloads[T],
  meta: EventMeta = {},
): EventOf<T> {
  const envelope: EventEnvelope<T> = {
    id: meta.id ?? randomUUID(),
    type,
    occurredAt: iso(meta.occurredAt),
    tenant,
  };
  return { ...envelope, ...payload } as EventOf<T>;
}

export function recordingStarted(p: RecordingStartedPayload, meta?: EventMeta): EventOf<'recording.started'> {
  return makeEvent('recording.started', p.tenant_id, p, meta);
}

export function recordingSpeech(p: RecordingSpeechPayload, meta?: EventMeta): EventOf<'recording.speech'> {
  return makeEvent('recording.speech', p.tenant_id, p, meta);
}

export function recordingChunk(p: RecordingChunkPayload, meta?: EventMeta): EventOf<'recording.chunk'> {
  return makeEvent('recording.chunk', p.tenant_id, p, meta);
}

/** Input for the end-of-recording builders: `status` and `error` are implied by the type. */
export type RecordingEndInput = Omit<RecordingEndPayload, 'status' | 'error' | 'mute_intervals' | 'dropped_bytes' | 'started_at' | 'timeline' | 'drift_ppm' | 'speech'> & {
  mute_intervals?: MuteInterval[];
  dropped_bytes?: number;
  started_at?: string | null;
  timeline?: TimelineSegment[] | null;
  drift_ppm?: number | null;
  speech?: SpeechInterval[] | null;
};

export function recordingCompleted(p: RecordingEndInput, meta?: EventMeta): EventOf<'recording.completed'> {
  return makeEvent(
    'recording.completed',
    p.tenant_id,
    { mute_intervals: [], dropped_bytes: 0, started_at: null, timeline: null, drift_ppm: null, speech: null, ...p, status: 'completed', error: null },
    { occurredAt: p.completed_at, ...meta },
  );
}

export function recordingFailed(
  p: RecordingEndInput & { error: string },
  meta?: EventMeta,
): EventOf<'recording.failed'> {
  return makeEvent(
    'recording.failed',
    p.tenant_id,
    { mute_intervals: [], dropped_bytes: 0, started_at: null, timeline: null, drift_ppm: null, speech: null, ...p, status: 'failed' },
    { occurredAt: p.completed_at, ...meta },
  );
}

export function voiceNoteStored(p: VoiceNoteStoredPayload, meta?: EventMeta): EventOf<'voicenote.stored'> {
  return makeEvent('voicenote.stored', p.tenant_id, p, { occurredAt: p.stored_at, ...meta });
}

export function voiceNoteRejected(p: VoiceNoteRejectedPayload, meta?: EventMeta): EventOf<'voicenote.rejected'> {
  return makeEvent('voicenote.rejected', p.tenant_id, p, meta);
}

export function roomCompleted(p: RoomCompletedPayload, meta?: EventMeta): EventOf<'room.completed'> {
  return makeEvent('room.completed', p.tenant, p, meta);
}

/** `tenant` is the failed event's tenant, so per-tenant monitoring sees its own failures. */
export function queueError(tenant: string, p: QueueErrorPayload, meta?: EventMeta): EventOf<'queue.error'> {
  return makeEvent('queue.error', tenant, p, { occurredAt: p.gave_up_at, ...meta });
}

export function queueStats(p: QueueStatsPayload, meta?: EventMeta): EventOf<'queue.stats'> {
  return makeEvent('queue.stats', SYSTEM_TENANT, p, meta);
}

export function filterApplied(p: FilterAppliedPayload, meta?: EventMeta): EventOf<'filter.applied'> {
  return makeEvent('filter.applied', p.tenant_id, p, meta);
}

export function isMonitoringEvent(event: { type: string }): boolean {
  return (MONITORING_EVENT_TYPES as readonly string[]).includes(event.type);
}

/**
 * The seed's `GlobalQueueMessage`: what `global.messages` consumers receive for a stored voice
 * note. camelCase, as the seed's consumers expect.
 */
export interface GlobalQueueMessage {
  /** The event id (also the AMQP messageId). */
  id: string;
  type: 'audio';
  source: 'whatsapp';
  tenantId: string;
  instance: string;
  chatId: string;
  messageId: string;
  /** Object key of the stored WAV. */
  key: string;
  url: string;
  urlExpiresAt: string;
  durationSec: number;
  sampleRate: number;
  /** Unix milliseconds at which the voice note was stored. */
  timestamp: number;
  priority: number;
}

export const GLOBAL_QUEUE_PRIORITY = 5;

export function toGlobalQueueMessage(e: EventOf<'voicenote.stored'>): GlobalQueueMessage {
  return {
    id: e.id,
    type: 'audio',
    source: 'whatsapp',
    tenantId: e.tenant_id,
    instance: e.instance,
    chatId: e.chat_id,
    messageId: e.message_id,
    key: e.key,
    url: e.url,
    urlExpiresAt: e.url_expires_at,
    durationSec: e.duration_sec,
    sampleRate: e.sample_rate,
    timestamp: Date.parse(e.stored_at),
    priority: GLOBAL_QUEUE_PRIORITY,
  };
}
