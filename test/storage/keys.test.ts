import t from 'tap';
import fc from 'fast-check';
import { ObjectKeys, sanitizeSegment, assertSafeKey, MAX_SEGMENT_BYTES } from '../../src/storage/keys.js';

const rec = { tenant: 'acme', meetingId: 'm-1', roomName: 'room', participant: 'alice', trackId: 'TR_1', recordingId: 'rec-9' };

t.test('contract shapes', async (t) => {
  const k = new ObjectKeys();
  t.equal(k.master(rec), 'recordings/acme/m-1/alice/TR_1/rec-9.wav');
  t.equal(k.master({ ...rec, meetingId: undefined }), 'recordings/acme/room/alice/TR_1/rec-9.wav', 'roomName without meetingId');
  t.equal(k.chunk(rec, 7), 'recordings/acme/m-1/alice/TR_1/rec-9/chunks/000007.wav');
  const vn = { tenant: 'acme', instance: 'inst', messageId: '3EB0ABC', timestamp: new Date('2024-02-29T23:59:59Z') };
  t.equal(k.voiceNote(vn), 'whatsapp/acme/inst/2024/02/29/3EB0ABC.wav');
  t.equal(k.voiceNoteOriginal(vn, '.OGG'), 'whatsapp/acme/inst/2024/02/29/3EB0ABC.ogg');
  t.equal(k.voiceNoteOriginal(vn, 'x/../y'), 'whatsapp/acme/inst/2024/02/29/3EB0ABC.bin');
  t.equal(new ObjectKeys({ prefix: '/prod//eu/' }).master(rec), 'prod/eu/recordings/acme/m-1/alice/TR_1/rec-9.wav');
  t.equal(new ObjectKeys({ prefix: '../x' }).prefix, '__/x/', 'prefix segments sanitized too');
  t.throws(() => k.chunk(rec, -1), { code: 'INVALID_PARAMETER' });
});

t.test('segments', async (t) => {
  t.equal(sanitizeSegment(''), '_');
  t.equal(sanitizeSegment('..'), '__');
  t.equal(sanitizeSegment('.hidden'), '_hidden');
  t.equal(sanitizeSegment('a/b\\c\u0000d\nE'), 'a_b_c_d_E');
  t.equal(sanitizeSegment('e\u0301'), '\u00e9', 'NFC');
  const long = 'x'.repeat(500);
  const cut = sanitizeSegment(long);
  t.ok(Buffer.byteLength(cut) <= MAX_SEGMENT_BYTES);
  t.not(cut, sanitizeSegment(`${'x'.repeat(499)}y`), 'different long ids stay different');
  const emoji = sanitizeSegment('😀'.repeat(100));
  t.ok(Buffer.byteLength(emoji) <= MAX_SEGMENT_BYTES);
  t.notOk(emoji.includes('\ufffd'), 'cut on a code point boundary');
});

t.test('property: no key escapes its prefix, no dot segments, stable', async () => {
  const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.constantFrom('', '.', '..', '../..', '/', '\u0000', '%2e%2e'));
  fc.assert(fc.property(
    fc.record({ tenant: anyString, meetingId: fc.option(anyString, { nil: undefined }), roomName: anyString, participant: anyString, trackId: anyString, recordingId: anyString }),
    fc.nat({ max: 999_999 }),
    fc.constantFrom('', 'prod', 'a/b'),
    (p, seq, prefix) => {
      const keys = new ObjectKeys({ prefix });
      for (const key of [keys.master(p), keys.chunk(p, seq)]) {
        if (!key.startsWith(`${keys.prefix}recordings/`)) return false;
        const segs = key.split('/');
        if (segs.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('.'))) return false;
         
        if (/[\u0000-\u001f\\]/.test(key)) return false;
        if (segs.some((s) => Buffer.byteLength(s) > MAX_SEGMENT_BYTES + 4)) return false;
        assertSafeKey(key);
        if (key !== keys.master(p) && key !== keys.chunk(p, seq)) return false;
      }
      const depth = keys.master(p).split('/').length;
      return depth === keys.prefix.split('/').filter(Boolean).length + 6 && keys.master(p) === new ObjectKeys({ prefix }).master({ ...p });
    },
  ), { numRuns: 500 });
  fc.assert(fc.property(anyString, anyString, anyString, fc.date({ min: new Date(0), max: new Date('9999-12-31'), noInvalidDate: true }), (tenant, instance, messageId, timestamp) => {
    const key = new ObjectKeys().voiceNote({ tenant, instance, messageId, timestamp });
    const segs = key.split('/');
    return segs.length === 7 && segs[0] === 'whatsapp' && !segs.some((s) => s === '' || s.startsWith('.')) && key === new ObjectKeys().voiceNote({ tenant, instance, messageId, timestamp });
  }), { numRuns: 300 });
});

t.test('assertSafeKey', async (t) => {
  for (const bad of ['', '/a', 'a/', 'a//b', './a', 'a/../b', 'a\u0000', 'a\\b']) t.throws(() => assertSafeKey(bad), { code: 'INVALID_PARAMETER' }, JSON.stringify(bad));
  t.doesNotThrow(() => assertSafeKey('recordings/a/b.wav'));
});
