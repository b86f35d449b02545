import { recordingCompleted, recordingFailed, type AudioEvent } from '../events/types.js';
import type { Logger } from '../observability/logger.js';
import type { ObjectMetadata } from '../storage/object-store.js';
import type { RecoveryOutcome } from '../storage/master-upload.js';
import { identityFields, type EventAppender, type RecordingIdentity } from './recording.js';
import type { RecordingCatalog } from './recording-catalog.js';

/** Options of {@link announceRecovered}. */
export interface RecoveryAnnouncerOptions {
  catalog: Pick<RecordingCatalog, 'recovered'>;
  events: EventAppender;
  /** Tenant of masters whose metadata names none. */
  defaultTenant: string;
  logger: Logger;
}

/**
 * Who a master a crashed process left behind belongs to, read back from the object metadata
 * `RecordingService.open` gave it (ids there are percent-encoded: S3 metadata is ASCII).
 */
export function identityOfMaster(recordingId: string, metadata: ObjectMetadata, defaultTenant: string): RecordingIdentity {
  const m: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(metadata)) m[k] = safeDecode(v);
  return {
    recordingId,
    tenant: m['tenant'] ?? defaultTenant,
    roomName: m['room-name'] ?? '',
    meetingId: m['meeting-id'],
    participant: m['participant'],
    trackId: m['track-id'],
    source: 'livekit',
  };
}

/** recording.completed (end_reason aborted) of a recovered master, or recording.failed when the store refused it for good. */
export function recoveryEvent(r: RecoveryOutcome, identity: RecordingIdentity, completedAt: Date): AudioEvent {
  const fields = {
    ...identityFields(identity),
    duration_sec: durationOf(r),
    completed_at: completedAt.toISOString(),
    end_reason: 'aborted' as const,
    url: null,
    url_expires_at: null,
  };
  if (r.status === 'failed') return recordingFailed({ ...fields, s3_key_master: null, size_bytes: 0, error: r.error }, { id: r.eventId });
  return recordingCompleted({ ...fields, s3_key_master: r.key, size_bytes: r.size });
}

/**
 * Announces one master recovered at start: its catalog record is closed, its event appended
 * (before `MasterUpload.recover` removes its spool), and the outcome logged.
 */
export async function announceRecovered(r: RecoveryOutcome, o: RecoveryAnnouncerOptions): Promise<void> {
  const identity = identityOfMaster(r.recordingId, r.metadata, o.defaultTenant);
  const durationSec = durationOf(r);
  if (r.status === 'failed') {
    await o.catalog.recovered(identity.tenant, r.recordingId, { key: r.key, sizeBytes: null, durationSec, error: r.error });
    await o.events.append(recoveryEvent(r, identity, new Date()));
    o.logger.error({ recordingId: r.recordingId, key: r.key, error: r.error }, 'recording failed after an unclean stop: the store refused its master; spool kept in uploads-failed/');
    return;
  }
  await o.catalog.recovered(identity.tenant, r.recordingId, { key: r.key, sizeBytes: r.size, durationSec });
  await o.events.append(recoveryEvent(r, identity, new Date()));
  o.logger.warn({ recordingId: r.recordingId, key: r.key, sizeBytes: r.size }, 'recording recovered after an unclean stop');
}

/** Seconds of PCM in the master, to the millisecond. */
function durationOf(r: RecoveryOutcome): number {
  return Math.round((r.dataBytes / (r.format.sampleRate * r.format.channels * 2)) * 1000) / 1000;
}

function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}
