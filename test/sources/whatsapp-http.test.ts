import t from 'tap';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { audioHeaders, postAudio } from '../helpers/whatsapp-app.js';

t.test('requests refused before the body is read', async (t) => {
  const ta = await startTestApp({ whatsapp: { maxBytes: 100_000 }, rateLimit: { instance: { capacity: 2, refillPerMinute: 1 } } });
  t.teardown(() => ta.close());
  const note = readFixture(await opusVoiceNote());

  const noKey = await postAudio(ta.baseUrl, note, audioHeaders({ apikey: undefined }));
  t.equal(noKey.status, 401);
  const bearer = await postAudio(ta.baseUrl, Buffer.alloc(0), audioHeaders({ apikey: undefined, authorization: `Bearer ${TEST_API_KEY}` }));
  t.match(bearer, { status: 415, body: { error: { code: 'EMPTY_BODY' } } }, 'a Bearer key is accepted');
  const otherTenant = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-tenant-id': 'someone-else' }));
  t.match(otherTenant, { status: 403, body: { error: { code: 'FORBIDDEN' } } });
  for (const header of ['X-Instance', 'X-Chat-Id', 'X-Message-Id']) {
    const res = await postAudio(ta.baseUrl, note, audioHeaders({ [header.toLowerCase()]: undefined }));
    t.match(res, { status: 400, body: { error: { code: 'MISSING_PARAMETER', details: { header } } } }, `${header} is required`);
  }
  const text = await postAudio(ta.baseUrl, note, audioHeaders({ 'content-type': 'text/plain' }));
  t.match(text, { status: 415, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE' } } });
  const huge = await postAudio(ta.baseUrl, Buffer.alloc(150_000, 1), audioHeaders());
  t.match(huge, { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
  const badSeconds = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-audio-seconds': 'ten' }));
  t.match(badSeconds, { status: 400, body: { error: { code: 'INVALID_PARAMETER', details: { header: 'X-Audio-Seconds' } } } });

  // the instance bucket holds 2 tokens: two cheap (declared-too-short) requests empty it
  const short = audioHeaders({ 'x-instance': 'limited', 'x-audio-seconds': '1' });
  t.equal((await postAudio(ta.baseUrl, note, short)).status, 422);
  t.equal((await postAudio(ta.baseUrl, note, short)).status, 422);
  const limited = await postAudio(ta.baseUrl, note, short);
  t.match(limited, { status: 429, body: { error: { code: 'RATE_LIMITED', details: { scope: 'instance' } } } });
  t.ok(Number(limited.headers.get('retry-after')) >= 1, `Retry-After: ${limited.headers.get('retry-after')}`);
  const otherInstance = await postAudio(ta.baseUrl, note, { ...short, 'x-instance': 'not-limited' });
  t.equal(otherInstance.status, 422, 'another instance has its own bucket');
});

t.test('per-instance duration filter routes', async (t) => {
  const ta = await startTestApp();
  t.teardown(() => ta.close());
  const url = `${ta.baseUrl}/v1/whatsapp/instances/inst-9/filter`;
  const headers = { apikey: TEST_API_KEY, 'content-type': 'application/json' };
  t.same(await (await fetch(url, { headers })).json(), { instance: 'inst-9', minSec: 3, maxSec: 7200, enabled: true });
  const put = await fetch(url, { method: 'PUT', headers, body: JSON.stringify({ minSec: 5, maxSec: 60, enabled: true }) });
  t.equal(put.status, 200);
  t.same(await put.json(), { instance: 'inst-9', minSec: 5, maxSec: 60, enabled: true });
  const bad = await fetch(url, { method: 'PUT', headers, body: JSON.stringify({ minSec: 0 }) });
  t.equal(bad.status, 400);
  t.match(await bad.json(), { error: { code: 'INVALID_PARAMETER', details: { field: 'instances.inst-9.minSec', value: 0 } } });
  const tooLong = await fetch(url, { method: 'PUT', headers, body: JSON.stringify({ maxSec: 9000 }) });
  t.match(await tooLong.json(), { error: { code: 'INVALID_PARAMETER', details: { field: 'instances.inst-9.maxSec' } } });
  const unauth = await fetch(url, { method: 'PUT', body: JSON.stringify({ minSec: 4 }) });
  t.equal(unauth.status, 401);
  t.same(await (await fetch(url, { headers })).json(), { instance: 'inst-9', minSec: 5, maxSec: 60, enabled: true }, 'refused changes left it as it was');
  const note = readFixture(await opusVoiceNote());
  const rejected = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'inst-9', 'x-audio-seconds': '4' }));
  t.match(rejected, { status: 422, body: { error: { code: 'DURATION_TOO_SHORT', details: { minSec: 5 } } } }, 'the override applies to uploads');
  const del = await fetch(url, { method: 'DELETE', headers });
  t.same(await del.json(), { instance: 'inst-9', minSec: 3, maxSec: 7200, enabled: true });
});
