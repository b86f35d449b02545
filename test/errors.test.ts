import t from 'tap';
import { AppError, ConfigError, ERROR_CODES, isRetryable, toAppError } from '../src/errors.js';
import { HTTP_STATUS, httpStatus, statusLine } from '../src/http/error-status.js';
import { errorReply } from '../src/http/server.js';

t.test('every code maps to a status and a body without a stack', async (t) => {
  t.same(Object.keys(HTTP_STATUS).sort(), [...ERROR_CODES].sort(), 'the status table covers exactly the codes');
  for (const code of ERROR_CODES) {
    const e = new AppError(code, 'm');
    const reply = errorReply(e);
    t.equal(reply.status, httpStatus(code));
    t.equal(reply.errorCode, code);
    t.same(Object.keys(e.toBody().error).sort(), ['code', 'message']);
    t.notOk(JSON.stringify(e.toBody()).includes('at '), 'no stack');
  }
  t.equal(toAppError(new Error('secret detail')).code, 'INTERNAL');
  t.equal(toAppError(new Error('secret detail')).message, 'internal error');
  t.equal(statusLine(429), '429 Too Many Requests');
  t.equal(statusLine(418), '418 Error');
});

t.test('retryable is what the thrower said, never derived from the code', async (t) => {
  t.equal(new AppError('STORAGE_UNAVAILABLE', 'down').retryable, false);
  t.equal(isRetryable(new AppError('STORAGE_UNAVAILABLE', 'down', { retryable: true })), true);
  t.equal(isRetryable(new Error('plain')), false);
});

t.test('a configuration error is not an HTTP error', async (t) => {
  const e = new ConfigError(['A must be set', 'B too']);
  t.notOk(e instanceof AppError, 'not an AppError');
  t.equal(e.code, 'CONFIG_INVALID');
  t.same(e.problems, ['A must be set', 'B too']);
  t.equal(toAppError(e).code, 'INTERNAL', 'reaching a request, it is an internal error');
});
