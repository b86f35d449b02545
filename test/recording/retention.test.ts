import { utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { retentionCommand } from '../../src/cli-commands.js';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { createLogger } from '../../src/observability/logger.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { RetentionSweeper } from '../../src/storage/retention-sweeper.js';
import { startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { egressUrl, outboxEvents } from '../helpers/egress.js';
import { S3RVER_BUCKET, s3rverStore, startS3rver } from '../helpers/storage-s3rver.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';


const logger = createLogger({ level: 'silent' });
const DAY = 86_400_000;

/** Sets the mtime of an fs-store object (what `list` reports as lastModified). */
async function age(objectsDir: string, key: string, days: number): Promise<void> {
  const when = new Date(Date.now() - days * DAY);
  await utimes(join(objectsDir, ...key.split('/')), when, when);
}

/** Runs the CLI command in-process, capturing what it prints. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await retentionCommand(args, { stdout: (s) => (out += s), stderr: (s) => (err += s), env });
  return { code, out, err };
}

t.test('the sweeper runs shortly after start, deletes what is older than retentionDays under the prefix, keeps the rest', async (t) => {
  const root = await tempDir(t, 'aid-sweeper-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  for (const k of ['p/recordings/old.wav', 'p/recordings/new.wav', 'p/catalog/recordings/a/old.json', 'elsewhere/old.wav']) await store.put(k, Buffer.from(k), { contentType: 'audio/wav' });
  for (const k of ['p/recordings/old.wav', 'p/catalog/recordings/a/old.json', 'elsewhere/old.wav']) await age(join(root, 'objects'), k, 10);

  const sweeper = new RetentionSweeper({ store, prefix: 'p/', retentionDays: 7, firstRunDelayMs: 0, intervalMs: 3_600_000, logger });
  t.teardown(() => sweeper.stop());
  sweeper.start();
  await waitFor(async () => (await store.head('p/recordings/old.wav')) === null || undefined, 10_000, 'first sweep');
  t.equal(await store.head('p/catalog/recordings/a/old.json'), null, 'catalog records age out with the audio');
  t.not(await store.head('p/recordings/new.wav'), null, 'newer object kept');
  t.not(await store.head('elsewhere/old.wav'), null, 'outside the prefix untouched');
  const [a, b] = [sweeper.sweepNow(), sweeper.sweepNow()];
  t.equal(a, b, 'a sweep in progress is joined, not doubled');
  t.equal(await a, 0, 'idempotent: nothing left to delete');
  await sweeper.stop();
  t.throws(() => new RetentionSweeper({ store, prefix: '', retentionDays: 0, logger }), RangeError);
});

t.test('in the daemon: retentionDays > 0 runs the sweep, which removes old recordings and their catalog entries', async (t) => {
  const off = await startTestApp();
  t.equal(off.app.retention, undefined, 'no sweeper when retentionDays is 0');
  await off.close();

  const h = await startTestApp({ storage: { retentionDays: 7 } });
  t.teardown(() => h.close());
  t.ok(h.app.retention, 'sweeper started');
  await simulateEgress({ url: await egressUrl(h, { roomName: 'room-old', trackId: 'TR_old' }), pcm: tonePcm(0.5), realtime: false });
  const old = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed'), 10_000, 'first recording');
  await h.app.catalog.whenIdle();
  await simulateEgress({ url: await egressUrl(h, { roomName: 'room-new', trackId: 'TR_new' }), pcm: tonePcm(0.5), realtime: false });
  const fresh = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id !== old.recording_id), 10_000, 'second recording');
  await h.app.catalog.whenIdle();

  const objects = join(h.dataDir, 'store', 'objects');
  const oldKeys: string[] = [];
  for await (const o of h.app.store.list('')) if (o.key.includes(old.recording_id as string)) oldKeys.push(o.key);
  t.equal(oldKeys.length, 4, 'the old master, its catalog record, its room index entry and its room track record');
  for (const k of oldKeys) await age(objects, k, 8);

  const deleted = await h.app.retention!.sweepNow();
  t.equal(deleted, oldKeys.length);
  for (const k of oldKeys) t.equal(await h.app.store.head(k), null, `${k} deleted`);
  t.not(await h.app.store.head(fresh.s3_key_master as string), null, 'the new master kept');
  const get = (id: unknown): Promise<Response> => fetch(`${h.baseUrl}/v1/recordings/${id as string}`, { headers: { apikey: TEST_API_KEY } });
  t.equal((await get(old.recording_id)).status, 404, 'the old recording is gone from the API');
  t.equal((await get(fresh.recording_id)).status, 200, 'the new one is still there');
});

t.test('CLI: retention sweep deletes now; retention apply on fs explains the sweep; retentionDays 0 is off', async (t) => {
  const dataDir = await tempDir(t, 'aid-cli-');
  const store = new FsObjectStore({ root: join(dataDir, 'store'), presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  await store.put('recordings/a/old.wav', Buffer.from('old'), { contentType: 'audio/wav' });
  await store.put('recordings/a/new.wav', Buffer.from('new'), { contentType: 'audio/wav' });
  await age(join(dataDir, 'store', 'objects'), 'recordings/a/old.wav', 31);
  const config = join(dataDir, 'config.json');
  await writeFile(config, JSON.stringify({ dataDir, storage: { retentionDays: 30 } }));

  const sweep = await cli(['sweep', '--config', config]);
  t.equal(sweep.code, 0, sweep.err);
  t.equal(sweep.out, 'deleted 1 object(s) under the whole store older than 30 days\n');
  t.equal(await store.head('recordings/a/old.wav'), null);
  t.not(await store.head('recordings/a/new.wav'), null);

  const apply = await cli(['apply', '-c', config]);
  t.equal(apply.code, 0);
  t.match(apply.out, /^fs store: no lifecycle rules; the daemon's periodic retention sweep deletes objects under the whole store older than 30 days instead\n$/);

  t.match(await cli(['apply', '--config', config], { RETENTION_DAYS: '0' }), { code: 0, out: /retention is off/ });
  t.match(await cli(['apply'], { DATA_DIR: dataDir, RETENTION_DAYS: 'soon' }), { code: 78, err: /RETENTION_DAYS/ });
  t.match(await cli(['expire']), { code: 64, err: /expected 'apply' or 'sweep'/ });
  t.match(await cli(['--help']), { code: 0, out: /Usage: audio-ingestd retention/ });
});

t.test('CLI: retention apply against an S3 endpoint without lifecycle support (s3rver) falls back to the sweep', async (t) => {
  const dir = await tempDir(t, 'aid-s3rver-');
  const s3 = await startS3rver(dir);
  t.teardown(() => s3.close());
  const config = join(dir, 'config.json');
  await writeFile(
    config,
    JSON.stringify({ dataDir: join(dir, 'data'), storage: { driver: 's3', prefix: 'env/eu', retentionDays: 14, s3: { endpoint: s3.endpoint, bucket: S3RVER_BUCKET, forcePathStyle: true } } }),
  );
  const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  const apply = await cli(['apply', '--config', config], env);
  t.equal(apply.code, 0, apply.err);
  t.equal(apply.out, `bucket ${S3RVER_BUCKET} does not support lifecycle rules (NotImplemented (HTTP 501)); the daemon's periodic retention sweep deletes objects under 'env/eu/' older than 14 days instead\n`);

  // the sweep works on S3 too (s3rver keeps real modification times, so nothing is old yet)
  const store = s3rverStore(s3.endpoint);
  await store.put('env/eu/recordings/x.wav', Buffer.from('x'), { contentType: 'audio/wav' });
  const sweep = await cli(['sweep', '--config', config], env);
  t.equal(sweep.code, 0, sweep.err);
  t.equal(sweep.out, "deleted 0 object(s) under 'env/eu/' older than 14 days\n");
  t.not(await store.head('env/eu/recordings/x.wav'), null);
  await store.stop();

  const unreachable = await cli(['apply', '--config', config], { ...env, S3_ENDPOINT: 'http://127.0.0.1:1' });
  t.equal(unreachable.code, 1, 'an endpoint that cannot be reached is an error');
  t.match(unreachable.err, /^audio-ingestd retention apply: /);
});

t.test('CLI: retention apply installs the lifecycle rule where the endpoint supports it, keeping other rules', async (t) => {
  // s3rver has no lifecycle API: a minimal stand-in for just the bucket's lifecycle document
  let lifecycle = '<LifecycleConfiguration><Rule><ID>keep-logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule></LifecycleConfiguration>';
  const seen: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://s3');
    seen.push(`${req.method} ${url.pathname}?${[...url.searchParams.keys()].join('&')}`);
    if (!url.searchParams.has('lifecycle')) return void res.writeHead(400).end();
    if (req.method === 'GET') return void res.writeHead(200, { 'content-type': 'application/xml' }).end(lifecycle);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      lifecycle = body;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const dir = await tempDir(t, 'aid-lifecycle-');
  const config = join(dir, 'config.json');
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await writeFile(config, JSON.stringify({ dataDir: dir, storage: { driver: 's3', prefix: 'env/eu', retentionDays: 14, s3: { endpoint, bucket: 'audio', forcePathStyle: true } } }));
  const env = { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' };

  const first = await cli(['apply', '--config', config], env);
  t.equal(first.code, 0, first.err);
  t.equal(first.out, "lifecycle rule 'audio-ingestd-retention' installed on bucket audio: objects under 'env/eu/' expire after 14 days (1 other rule(s) kept)\n");
  t.same(seen, ['GET /audio/?lifecycle', 'PUT /audio/?lifecycle'], 'read the rules, then write them back');
  const rules = (): string[] => lifecycle.match(/<Rule>.*?<\/Rule>/g) ?? [];
  t.equal(rules().length, 2);
  const kept = rules().find((r) => r.includes('<ID>keep-logs</ID>'));
  t.ok(kept?.includes('<Prefix>logs/</Prefix>') && kept.includes('<Days>3</Days>'), 'the existing rule is kept as it was');
  const ours = rules().find((r) => r.includes('<ID>audio-ingestd-retention</ID>'));
  t.ok(ours?.includes('<Prefix>env/eu/</Prefix>') && ours.includes('<Days>14</Days>') && ours.includes('<Status>Enabled</Status>'), 'ours expires the prefix after retentionDays');

  // applying again replaces our rule rather than adding a second one
  await writeFile(config, JSON.stringify({ dataDir: dir, storage: { driver: 's3', prefix: 'env/eu', retentionDays: 30, s3: { endpoint, bucket: 'audio', forcePathStyle: true } } }));
  const second = await cli(['apply', '--config', config], env);
  t.match(second.out, /expire after 30 days \(1 other rule\(s\) kept\)/);
  t.equal(lifecycle.match(/audio-ingestd-retention/g)?.length, 1);
  t.notMatch(lifecycle, /<Days>14<\/Days>/);
});
