import t from 'tap';
import type { AudioEvent } from '../../src/events/types.js';
import { createLogger } from '../../src/observability/logger.js';
import { LocalRoomLease } from '../../src/rooms/room-lease.js';
import { RoomService } from '../../src/rooms/room-service.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { ObjectKeys } from '../../src/storage/keys.js';
import type { BatchItem } from '../../src/storage/object-store.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const ROOM = 'race-room';

/** An event of a LiveKit track of the room, with only the fields the rooms read. */
function trackEvent(type: 'recording.started' | 'recording.completed', id: string, participant: string, fields: Record<string, unknown>): AudioEvent {
  return { type, tenant_id: 'default', recording_id: id, user_id: participant, platform: 'livekit', room_name: ROOM, track_id: `TR_${participant}`, s3_key_master: `recordings/${id}.wav`, ...fields } as unknown as AudioEvent;
}

const started = (id: string, participant: string): AudioEvent => trackEvent('recording.started', id, participant, { sample_rate: 48000, channels: 1, started_at: new Date().toISOString() });

const completed = (id: string, participant: string): AudioEvent =>
  trackEvent('recording.completed', id, participant, { duration_sec: 1, completed_at: new Date().toISOString(), started_at: new Date(Date.now() - 1000).toISOString(), mute_intervals: [] });

t.test('a track record the store lists before its put has answered is taken from memory, not read back', async (t) => {
  const root = await tempDir(t, 'aid-room-records-');
  const fs = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1', secret: 's' } });
  await fs.start();
  t.teardown(() => fs.stop());
  // the real store, whose answers to puts of `bob`'s record are held back after the write is done
  let holding = false;
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const reads: string[] = [];
  const written: string[] = [];
  const heldBack = async (keys: string[]): Promise<void> => {
    written.push(...keys);
    if (holding && keys.some((k) => k.includes('rec-bob'))) await hold;
  };
  const store = Object.create(fs) as FsObjectStore;
  store.putBatch = async (items: BatchItem[]) => {
    await fs.putBatch(items);
    await heldBack(items.map((i) => i.key));
  };
  store.put = async (key, body, options) => {
    const r = await fs.put(key, body, options);
    await heldBack([key]);
    return r;
  };
  store.get = (key: string) => {
    reads.push(key);
    return fs.get(key);
  };
  const rooms = new RoomService({
    store,
    keys: new ObjectKeys({ prefix: '' }),
    events: { append: async () => undefined },
    lease: new LocalRoomLease(),
    config: { idleSec: 0.2, leaseSec: 30, trackWaitSec: 5, staleSec: 30, dual: {}, law: { headroomDb: 6, knee: 0.9 }, partBytes: 5 * 1024 * 1024, windowSec: 10 },
    presign: async () => ({ url: 'http://127.0.0.1/x', expiresAt: new Date() }),
    logger: createLogger({ level: 'silent' }),
  });
  rooms.start();
  t.teardown(() => rooms.stop());

  rooms.observe(started('rec-alice', 'alice'));
  rooms.observe(completed('rec-alice', 'alice'));
  await waitFor(() => written.some((k) => k.includes('rec-alice')) || undefined, 5_000, "alice's record written");
  // bob joins: his record is in the store, the put's answer is not back when the room is examined
  holding = true;
  rooms.observe(started('rec-bob', 'bob'));
  await waitFor(() => written.some((k) => k.includes('rec-bob')) || undefined, 5_000, "bob's record written");
  const listed: string[] = [];
  for await (const item of fs.list('rooms-state/default/race-room/tracks/')) listed.push(item.key);
  t.equal(listed.length, 2, "the store lists both records while bob's put is unanswered");
  // the examination (after alice's idle window) has read the finished marker once it went through the records
  await waitFor(() => reads.find((k) => k.endsWith('finished.json')), 10_000, 'room examined');
  t.same(reads.filter((k) => k.includes('/tracks/')), [], 'no track record of this host read back from the store');
  release();
});
