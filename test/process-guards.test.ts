import { EventEmitter } from 'node:events';
import t from 'tap';
import { inRequestScope } from '../src/http/request-scope.js';
import { installProcessGuards } from '../src/main.js';
import { startTestApp } from './helpers/app.js';

t.test('uncaught exceptions and unhandled rejections are counted and logged with the route and request id they came from', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const proc = new EventEmitter();
  const exits: number[] = [];
  installProcessGuards(h.app, h.app.logger, proc as never, (code) => exits.push(code));

  proc.emit('unhandledRejection', new Error('outside any request'));
  let thrown: unknown;
  try {
    inRequestScope({ route: 'whatsapp_audio', requestId: 'req-7' }, () => {
      throw new Error('thrown in a uWS callback');
    });
  } catch (err) {
    thrown = err;
  }
  proc.emit('uncaughtException', thrown);
  proc.emit('uncaughtException', new Error('a second one while stopping'));
  await new Promise((resolve) => setImmediate(resolve));
  await h.app.stop();
  await new Promise((resolve) => setImmediate(resolve));

  t.same(exits, [70], 'one fatal stop, exit 70 after it');
  t.equal(h.app.state, 'stopped');
  const log = (msg: string): Record<string, unknown> | undefined => h.logs.find((l) => l.msg === msg);
  t.match(log('unhandled promise rejection'), { route: 'none', err: { message: 'outside any request' } });
  t.match(log('uncaught exception: stopping'), { route: 'whatsapp_audio', requestId: 'req-7', err: { message: 'thrown in a uWS callback' } });
  t.match(log('uncaught exception while stopping'), { route: 'none' });
  const text = await h.app.metrics.registry.metrics();
  const count = (labels: string): number => Number(new RegExp(`audio_ingestd_unhandled_errors_total\\{${labels}\\} (\\d+)`).exec(text)?.[1] ?? 0);
  t.equal(count('kind="exception",route="whatsapp_audio"'), 1);
  t.equal(count('kind="exception",route="none"'), 1);
  t.equal(count('kind="rejection",route="none"'), 1);
});
