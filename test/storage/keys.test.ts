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
  const hashed = (clean: string) => new RegExp(`^${clean}~[0-9a-f]{16}$`, 'u');
  t.equal(sanitizeSegment('3EB0C431C26A1916E4C2'), '3EB0C431C26A1916E4C2', 'a safe id is kept as it is');
  t.equal(sanitizeSegment('alice@example.com (mobile)'), 'alice@example.com (mobile)');
  t.equal(sanitizeSegment('\u00e9'), '\u00e9');
  t.match(sanitizeSegment(''), hashed('_'));
  t.match(sanitizeSegment('..'), hashed('__'));
  t.match(sanitizeSegment('.hidden'), hashed('_hidden'));
  t.match(sanitizeSegment('a/b\\c\u0000d\nE'), hashed('a_b_c_d_E'));
  t.match(sanitizeSegment('e\u0301'), hashed('\u00e9'), 'NFC, and told apart from the precomposed id');
  t.match(sanitizeSegment('a~b'), hashed('a_b'), 'a ~ in an id is escaped: only the hash suffix has one');
  // what overwrote a voice note: two message ids that the rules alone make one
  const [slash, underscore] = [sanitizeSegment('M1/1'), sanitizeSegment('M1_1')];
  t.not(slash, underscore, 'M1/1 and M1_1 are two keys');
  t.not(sanitizeSegment(slash), slash, 'an id spelled like another id\'s segment gets a segment of its own');
  const long = 'x'.repeat(500);
  const cut = sanitizeSegment(long);
  t.ok(Buffer.byteLength(cut) <= MAX_SEGMENT_BYTES);
  t.not(cut, sanitizeSegment(`${'x'.repeat(499)}y`), 'different long ids stay different');
  const emoji = sanitizeSegment('😀'.repeat(100));
  t.ok(Buffer.byteLength(emoji) <= MAX_SEGMENT_BYTES);
  t.notOk(emoji.includes('\ufffd'), 'cut on a code point boundary');
});

t.test('property: distinct ids give distinct segments', async () => {
  const anyId = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.constantFrom('', '_', '.', '..', '__', 'a/b', 'a_b', 'a\\b', 'a~b', 'e\u0301', '\u00e9'));
  fc.assert(fc.property(anyId, anyId, (a, b) => a === b || sanitizeSegment(a) !== sanitizeSegment(b)), { numRuns: 2000 });
  // a segment given back as an id, and every way to spell a collision with the rules' own replacements
  fc.assert(fc.property(anyId, (a) => {
    const s = sanitizeSegment(a);
    return s === a || sanitizeSegment(s) !== s;
  }), { numRuns: 1000 });
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
