import fc from 'fast-check';
import t from 'tap';
import { parseMute } from '../../src/sources/livekit-egress.js';

const ab = (text: string): ArrayBuffer => {
  const b = Buffer.from(text, 'utf8');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
};

t.test('parseMute never throws and answers only true, false or undefined, for any bytes', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const r = parseMute(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer);
      return r === true || r === false || r === undefined;
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

t.test('the accepted forms, with any JSON whitespace, give the flag', async (t) => {
  const ws = fc.stringMatching(/^[ \t\r\n]{0,3}$/);
  fc.assert(
    fc.property(fc.boolean(), ws, ws, ws, ws, (muted, a, b, c, d) => {
      const text = `${a}{${b}"muted"${c}:${d}${String(muted)}}`;
      return Buffer.byteLength(text) > 64 || parseMute(ab(text)) === muted;
    }),
  );
  t.equal(parseMute(ab('true')), true);
  t.equal(parseMute(ab('false')), false);
});

t.test('anything else is undefined: other keys, other values, extra fields, long texts', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const text = JSON.stringify(v);
      const expected = text === 'true' ? true : text === 'false' ? false : text === '{"muted":true}' ? true : text === '{"muted":false}' ? false : undefined;
      return parseMute(ab(text)) === expected;
    }),
    { numRuns: 2000 },
  );
  fc.assert(fc.property(fc.string({ minLength: 65 - 16, maxLength: 200 }), (pad) => parseMute(ab(`{"muted":true}${' '.repeat(65)}${pad}`)) === undefined));
  t.equal(parseMute(ab('{"muted":true,"x":1}')), undefined);
  t.equal(parseMute(ab('{"muted":"true"}')), undefined);
  t.equal(parseMute(ab('TRUE')), undefined);
});
