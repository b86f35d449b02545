import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  EVENT_TYPES,
  filterApplied,
  roomCompleted,
  isMonitoringEvent,
  queueError,
  queueStats,
  recordingChunk,
  recordingFailed,
  recordingSpeech,
  recordingStarted,
  toGlobalQueueMessage,
  voiceNoteRejected,
  type AudioEvent,
  type EventOf,
} from '../../src/events/types.js';
import { completedEvent, storedVoiceNote } from '../helpers/events-fixtures.js';
import { loadSchema, validate } from '../helpers/events-schema.js';

const at = '2025-01-02T03:04:05.000Z';

function oneOfEach(): AudioEvent[] {
  return [
    recordingStarted({
      recording_id: 'r1', tenant_id: 't1', user_id: 'alice', platform: 'livekit', room_name: 'room', meeting_id: null,
      track_id: 'TR_1', s3_key_master: 'recordings/t1/room/alice/TR_1/r1.wav', sample_rate: 48_000, channels: 1, started_at: at,
    }),
    recordingChunk({
      recording_id: 'r1', tenant_id: 't1', user_id: 'alice', seq: 0, s3_key: null, start_sec: 0, duration_sec: 2,
      start_sample: 0, sample_count: 96_000, size_bytes: 192_044, sample_rate: 48_000, channels: 1, url: null, url_expires_at: null,
    }),
    completedEvent(1),
    recordingFailed({
      recording_id: 'r2', s3_key_master: null, tenant_id: 't1', user_id: 'bob', platform: 'livekit', duration_sec: 0,
      size_bytes: 0, completed_at: at, end_reason: 'aborted', url: null, url_expires_at: null, error: 'storage unavailable',
    }),
    storedVoiceNote(1),
    voiceNoteRejected({
      tenant_id: 't1', platform: 'whatsapp', instance: 'i1', chat_id: 'c', message_id: 'm', code: 'DURATION_TOO_SHORT',
      reason: 'audio is 1.2 s, minimum is 3 s', duration_sec: 1.2,
    }),
    queueError('t1', {
      sink: 'webhook', failed_event_id: completedEvent(2).id, failed_event_type: 'recording.completed', attempts: 5,
      error: 'HTTP 410', status: 410, gave_up_at: at,
    }),
    queueStats({ host: 'h1', last_seq: 10, segments: 1, sinks: [{ name: 'amqp', pending: 0, ready: true, delivered: 10, retries: 0, last_error: null }] }),
    filterApplied({
      tenant_id: 't1', instance: 'i1', filter: 'duration', action: 'rejected', reason: 'too short', duration_sec: 1,
      min_sec: 3, max_sec: 7200, chat_id: null, message_id: 'm',
    }),
    roomCompleted({
      session_id: '0b6f2b8e-1c2d-8e3f-a4b5-c6d7e8f90a1b', room_name: 'weekly', tenant: 't1', started_at: at, ended_at: at,
      duration_sec: 61.5, sample_rate: 48000,
      tracks: [{ recording_id: 'r1', participant: 'alice', track_id: 'TR_1', offset_ms: 2300, duration_sec: 59.2 }],
      manifest_key: 'rooms/t1/weekly/s1/manifest.json', mix_key: 'rooms/t1/weekly/s1/mix.wav', dual_key: null,
      url: 'https://s3.example/rooms/t1/weekly/s1/manifest.json?sig', mix_url: 'https://s3.example/rooms/t1/weekly/s1/mix.wav?sig',
      dual_url: null, url_expires_at: at,
    }),
    recordingSpeech({
      recording_id: 'r1', tenant_id: 't1', user_id: 'alice', room_name: 'room', track_id: 'TR_1', speech: 'on', offset: 48_000,
      offset_sec: 1, sample_rate: 48_000,
    }),
  ];
}

t.test('every event type has a schema file and its builder output validates', async (t) => {
  const files = readdirSync(join(import.meta.dirname, '..', '..', 'docs', 'events.schema')).map((f) => f.replace(/\.json$/, ''));
  for (const type of EVENT_TYPES) t.ok(files.includes(type), `schema for ${type}`);
  const events = oneOfEach();
  t.same(events.map((e) => e.type).sort(), [...EVENT_TYPES].sort(), 'one builder per type');
  for (const e of events) t.same(validate(loadSchema(e.type), e), [], `${e.type} is valid`);
});

t.test('envelope: uuid id, ISO time, tenant, flat payload', async (t) => {
  const e = completedEvent(7) as EventOf<'recording.completed'>;
  t.match(e.id, /^[0-9a-f-]{36}$/);
  t.equal(e.occurredAt, e.completed_at, 'completion time is the occurrence time');
  t.equal(e.tenant, e.tenant_id);
  t.equal(e.status, 'completed');
  t.equal(e.error, null);
  t.same(Object.keys(e).slice(0, 4), ['id', 'type', 'occurredAt', 'tenant'], 'envelope first');
  t.not(completedEvent(7).id, e.id, 'fresh id per event');
  t.equal(isMonitoringEvent(e), false);
  t.equal(isMonitoringEvent(oneOfEach()[6]!), true);
});

t.test('the validator rejects what the schemas forbid', async (t) => {
  const schema = loadSchema('recording.completed');
  const good = completedEvent(1);
  t.same(validate(schema, good), []);
  const bad = { ...good, status: 'failed', end_reason: 'crashed', size_bytes: -1, id: 'nope', extra: 1 } as Record<string, unknown>;
  delete bad.recording_id;
  const problems = validate(schema, bad);
  for (const p of ['$.status', '$.end_reason', '$.size_bytes', '$.id', 'unexpected property extra', 'missing recording_id']) {
    t.ok(problems.some((x) => x.includes(p)), `reports ${p}`);
  }
  t.not(validate(schema, { ...good, mute_intervals: [{ start_sec: 1 }] }).length, 0, 'nested items checked');
  t.not(validate(schema, { ...good, occurredAt: 'yesterday' }).length, 0, 'date-time checked');
});

t.test('GlobalQueueMessage shape for voicenote.stored', async (t) => {
  const e = storedVoiceNote(3) as EventOf<'voicenote.stored'>;
  const m = toGlobalQueueMessage(e);
  t.same(validate(loadSchema('global-queue-message'), m), []);
  t.match(m, { id: e.id, type: 'audio', source: 'whatsapp', tenantId: 't1', messageId: 'MSG3', priority: 5, timestamp: Date.parse(at) });
});
