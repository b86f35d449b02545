import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { sha256Hex } from '../../src/tenants/tenant-registry.js';
import { startTestApp, TEST_API_KEY, type TestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, readWav } from '../helpers/egress.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

type Ev = Record<string, unknown>;
type View = Record<string, unknown> & { id: string; state: string; url: string | null };

const OTHER_KEY = 'other-tenant-key-0123456789abcdef';

/** A daemon with two tenants: `default` (TEST_API_KEY) and `other` (from a tenants file). */
async function twoTenantApp(t: Test): Promise<TestApp> {
  const dir = await tempDir(t, 'aid-tenants-');
  const tenantsFile = join(dir, 'tenants.json');
  writeFileSync(tenantsFile, JSON.stringify({ tenants: [{ id: 'other', keySha256: [sha256Hex(OTHER_KEY)] }] }));
  const h = await startTestApp({ auth: { tenantsFile } });
  t.teardown(() => h.close());
  return h;
}

function events(h: TestApp, type: string): Ev[] {
  return outboxEvents(h).filter((e) => e.type === type);
}

async function getJson(url: string, key = TEST_API_KEY): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { headers: { apikey: key } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Waits until GET /v1/recordings/:id shows `state`. */
function recordingIn(h: TestApp, id: string, state: string): Promise<View> {
  return waitFor(
    async () => {
      const r = await getJson(`${h.baseUrl}/v1/recordings/${id}`);
      return r.status === 200 && r.body.state === state ? (r.body as View) : undefined;
    },
    10_000,
    `recording ${id} in state ${state}`,
  );
}

t.test('GET /v1/recordings/:id while live, then completed with a presigned URL that downloads the exact WAV', async (t) => {
  const h = await twoTenantApp(t);
  const url = await egressUrl(h, { roomName: 'room-r', meetingId: 'meet-r', trackId: 'TR_r', participant: 'alice' });
  const live = await simulateEgress({ url, pcm: tonePcm(1), realtime: false, end: 'none' });
  const started = await waitFor(() => events(h, 'recording.started')[0], 10_000, 'recording.started');
  const id = started.recording_id as string;

  const during = await recordingIn(h, id, 'recording');
  t.match(during, {
    id,
    tenant: 'default',
    source: 'livekit',
    roomName: 'room-r',
    meetingId: 'meet-r',
    participant: 'alice',
    trackId: 'TR_r',
    key: started.s3_key_master,
    endedAt: null,
    endReason: null,
    durationSec: null,
    sizeBytes: null,
    sampleRate: 48000,
    channels: 1,
    url: null,
    urlExpiresAt: null,
  });
  t.match(during.chunkPrefix, new RegExp(`/${id}/chunks/$`));

  const other = await getJson(`${h.baseUrl}/v1/recordings/${id}`, OTHER_KEY);
  t.equal(other.status, 404, "another tenant's recording is not found");
  t.match(other.body, { error: { code: 'NOT_FOUND' } });
  t.equal((await fetch(`${h.baseUrl}/v1/recordings/${id}`)).status, 401, 'an API key is required');

  live.socket!.close();
  const completed = await waitFor(() => events(h, 'recording.completed').find((e) => e.recording_id === id), 10_000, 'recording.completed');
  const atOnce = await getJson(`${h.baseUrl}/v1/recordings/${id}`);
  t.equal(atOnce.body.state, 'completed', 'the catalog is updated before the completion event goes out');
  const done = await recordingIn(h, id, 'completed');
  t.match(done, { id, endReason: 'normal', durationSec: 1, sizeBytes: MASTER_HEADER_BYTES + 96000, key: completed.s3_key_master, error: null, muteIntervals: [] });
  t.ok(typeof done.endedAt === 'string' && Date.parse(done.endedAt as string) >= Date.parse(done.startedAt as string), 'ended after it started');
  const ttl = h.config.storage.presignTtlSec * 1000;
  const expiresIn = Date.parse(done.urlExpiresAt as string) - Date.now();
  t.ok(expiresIn > 0 && expiresIn <= ttl, 'URL expiry within storage.presignTtlSec');

  const download = await fetch(done.url!);
  t.equal(download.status, 200);
  t.equal(download.headers.get('content-type'), 'audio/wav');
  t.equal(download.headers.get('accept-ranges'), 'bytes');
  const bytes = Buffer.from(await download.arrayBuffer());
  t.ok(bytes.equals(await h.app.store.get(done.key as string)), 'the URL serves the stored master, byte for byte');
  const wav = readWav(bytes);
  t.equal(wav.dataSize, 96000, 'one second of 48 kHz mono');
  t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize);

  const part = await fetch(done.url!, { headers: { Range: 'bytes=44-1043' } });
  t.equal(part.status, 206, 'a range is answered 206');
  t.equal(part.headers.get('content-range'), `bytes 44-1043/${bytes.length}`);
  t.equal(part.headers.get('content-length'), '1000');
  t.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(44, 1044)), 'the range holds exactly those bytes');
  t.equal((await getJson(`${h.baseUrl}/v1/recordings/${id}`, OTHER_KEY)).status, 404, 'still not found for the other tenant');
});

t.test('GET /v1/recordings lists by meetingId or roomName, per tenant, bounded', async (t) => {
  const h = await twoTenantApp(t);
  const streams = [
    { roomName: 'room-L', meetingId: 'meet-L', trackId: 'TR_1' },
    { roomName: 'room-L', meetingId: 'meet-L', trackId: 'TR_2' },
    { roomName: 'room-L', trackId: 'TR_3' },
    { roomName: 'room-X', trackId: 'TR_4' },
  ];
  for (const s of streams) await simulateEgress({ url: await egressUrl(h, s), pcm: tonePcm(0.5), realtime: false });
  await waitFor(() => events(h, 'recording.completed').length === streams.length || undefined, 15_000, 'all completed');
  const list = async (query: string, key = TEST_API_KEY): Promise<{ status: number; body: Record<string, unknown> }> => getJson(`${h.baseUrl}/v1/recordings?${query}`, key);
  const tracksOf = (body: Record<string, unknown>): string[] => (body.recordings as View[]).map((r) => r.trackId as string).sort();

  const byMeeting = await waitFor(async () => {
    const r = await list('meetingId=meet-L');
    return (r.body.recordings as View[]).every((v) => v.state === 'completed') && (r.body.recordings as View[]).length === 2 ? r : undefined;
  });
  t.equal(byMeeting.status, 200);
  t.same(tracksOf(byMeeting.body), ['TR_1', 'TR_2']);
  t.equal(byMeeting.body.truncated, false);
  for (const v of byMeeting.body.recordings as View[]) t.match(v.url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/objects\//, 'each completed recording has a URL');

  const byRoom = await waitFor(async () => {
    const r = await list('roomName=room-L');
    return (r.body.recordings as View[]).filter((v) => v.state === 'completed').length === 3 ? r : undefined;
  });
  t.same(tracksOf(byRoom.body), ['TR_1', 'TR_2', 'TR_3'], 'a room lists its recordings with and without a meeting id');
  const started = (byRoom.body.recordings as View[]).map((v) => v.startedAt as string);
  t.same(started, [...started].sort(), 'oldest first');
  t.same(tracksOf((await list('roomName=room-X')).body), ['TR_4']);
  t.same(tracksOf((await list('meetingId=meet-L&roomName=room-X')).body), [], 'both given: the meeting within that room');
  t.same((await list('roomName=room-nobody')).body, { recordings: [], truncated: false });

  const limited = await list('roomName=room-L&limit=2');
  t.equal((limited.body.recordings as View[]).length, 2);
  t.equal(limited.body.truncated, true, 'more exist than the limit');

  t.same((await list('roomName=room-L', OTHER_KEY)).body, { recordings: [], truncated: false }, 'another tenant sees none of them');

  const missing = await list('limit=5');
  t.equal(missing.status, 400);
  t.match(missing.body, { error: { code: 'MISSING_PARAMETER' } });
  for (const bad of ['limit=0', 'limit=1001', 'limit=abc', 'limit=-1']) {
    const r = await list(`roomName=room-L&${bad}`);
    t.equal(r.status, 400, bad);
    t.match(r.body, { error: { code: 'INVALID_PARAMETER' } }, bad);
  }
  t.equal((await fetch(`${h.baseUrl}/v1/recordings?roomName=room-L`)).status, 401, 'an API key is required');
});

t.test('an unknown or hostile id is simply not found', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  for (const id of ['nope', '..', '%2e%2e', 'a%2Fb', 'x'.repeat(300)]) {
    const r = await getJson(`${h.baseUrl}/v1/recordings/${id}`);
    t.equal(r.status, 404, id.slice(0, 20));
    t.match(r.body, { error: { code: 'NOT_FOUND' } });
  }
});
