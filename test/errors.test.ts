import t from 'tap';
import { AppError, ERROR_CODES, toAppError, statusLine } from '../src/errors.js';

t.test('every code maps to a status and a body without a stack', async (t) => {
  for (const code of Object.keys(ERROR_CODES) as (keyof typeof ERROR_CODES)[]) {
    const e = new AppError(code, 'm');
    t.equal(e.status, ERROR_CODES[code]);
    t.same(Object.keys(e.toBody().error).sort(), ['code', 'message']);
    t.notOk(JSON.stringify(e.toBody()).includes('at '), 'no stack');
  }
  t.equal(toAppError(new Error('secret detail')).code, 'INTERNAL');
  t.equal(toAppError(new Error('secret detail')).message, 'internal error');
  t.equal(statusLine(429), '429 Too Many Requests');
});
