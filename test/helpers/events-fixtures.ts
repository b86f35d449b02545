import { recordingCompleted, voiceNoteStored, type AudioEvent } from '../../src/events/types.js';

/** A valid recording.completed with a recognisable index in recording_id. */
export function completedEvent(i: number, tenant = 't1'): AudioEvent {
  return recordingCompleted({
    recording_id: `rec-${i}`,
    s3_key_master: `recordings/${tenant}/room/alice/TR_1/rec-${i}.wav`,
    tenant_id: tenant,
    user_id: 'alice',
    platform: 'livekit',
    meeting_title: 'Weekly',
    duration_sec: 12.5,
    size_bytes: 400_044,
    completed_at: '2025-01-02T03:04:05.000Z',
    end_reason: 'normal',
    mute_intervals: [
      {
        start_sec: 1,
        end_sec: 2,
        start_sample: 48_000,
        end_sample: 96_000,
        started_at: '2025-01-02T03:03:54.000Z',
        ended_at: '2025-01-02T03:03:55.000Z',
      },
    ],
    url: 'https://s3.example/x.wav?sig=1',
    url_expires_at: '2025-01-02T04:04:05.000Z',
  });
}

export function storedVoiceNote(i: number, tenant = 't1'): AudioEvent {
  return voiceNoteStored({
    voicenote_id: `vn-${i}`,
    tenant_id: tenant,
    platform: 'whatsapp',
    instance: 'inst1',
    chat_id: '5511999999999@s.whatsapp.net',
    message_id: `MSG${i}`,
    key: `whatsapp/${tenant}/inst1/2025/01/02/MSG${i}.wav`,
    original_key: null,
    url: 'https://s3.example/vn.wav?sig=1',
    url_expires_at: '2025-01-02T04:04:05.000Z',
    duration_sec: 4.2,
    sample_rate: 16_000,
    channels: 1,
    size_bytes: 134_444,
    format: 'ogg-opus',
    ptt: true,
    message_timestamp: '2025-01-02T03:04:00.000Z',
    stored_at: '2025-01-02T03:04:05.000Z',
  });
}
