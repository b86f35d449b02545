import t from 'tap';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { bundledFfmpeg, ffmpegVersion, resolveFfmpeg } from '../../src/audio/ffmpeg-binary.js';
import { startTestApp } from '../helpers/app.js';
import * as fx from '../helpers/audio-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('FFMPEG_PATH wins, then an ffmpeg on PATH, then the bundled static build', async (t) => {
  const dir = await tempDir(t, 'ffmpeg-bin-');
  const sys = join(dir, 'with', 'ffmpeg');
  const without = join(dir, 'without');
  mkdirSync(join(dir, 'with'));
  mkdirSync(without);
  symlinkSync(fx.STATIC_FFMPEG, sys);
  t.same(resolveFfmpeg({ FFMPEG_PATH: '/opt/ffmpeg', PATH: join(dir, 'with') }), { path: '/opt/ffmpeg', source: 'env' });
  t.same(resolveFfmpeg({ PATH: `${without}:${join(dir, 'with')}` }), { path: sys, source: 'system' });
  t.same(resolveFfmpeg({ PATH: without }), { path: fx.STATIC_FFMPEG, source: 'bundled' });
  t.equal(bundledFfmpeg(), fx.STATIC_FFMPEG);
});

t.test('the version is read from the binary', async (t) => {
  t.equal(await ffmpegVersion(fx.STATIC_FFMPEG), 'N-47683-g0e8eb07980-static');
  if (fx.PATH_FFMPEG !== undefined) t.match(await ffmpegVersion(fx.PATH_FFMPEG), /^\S+$/);
  await t.rejects(ffmpegVersion('/nonexistent/ffmpeg'));
});

t.test('without a system ffmpeg the daemon warns at start, naming the static build, and build_info says so', async (t) => {
  const saved = { PATH: process.env.PATH, FFMPEG_PATH: process.env.FFMPEG_PATH };
  const empty = await tempDir(t, 'no-ffmpeg-');
  t.teardown(() => {
    process.env.PATH = saved.PATH;
    if (saved.FFMPEG_PATH === undefined) delete process.env.FFMPEG_PATH;
    else process.env.FFMPEG_PATH = saved.FFMPEG_PATH;
  });
  process.env.PATH = empty;
  delete process.env.FFMPEG_PATH;
  const h = await startTestApp();
  process.env.PATH = saved.PATH;
  t.teardown(() => h.close());
  const warn = h.logs.find((l) => l.level === 'warn' && typeof l.msg === 'string' && l.msg.includes('bundled static build'));
  t.match(warn, { binary: fx.STATIC_FFMPEG, version: 'N-47683-g0e8eb07980-static' });
  const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
  t.match(metrics, /audio_ingestd_build_info\{[^}]*ffmpeg="N-47683-g0e8eb07980-static",ffmpeg_source="bundled"\} 1/);
});

t.test('with FFMPEG_PATH the daemon logs that decoder and reports it', async (t) => {
  const saved = process.env.FFMPEG_PATH;
  t.teardown(() => {
    if (saved === undefined) delete process.env.FFMPEG_PATH;
    else process.env.FFMPEG_PATH = saved;
  });
  process.env.FFMPEG_PATH = fx.ENCODER_FFMPEG;
  const h = await startTestApp();
  t.teardown(() => h.close());
  t.ok(h.logs.some((l) => l.msg === 'ffmpeg decoder' && l.binary === fx.ENCODER_FFMPEG && l.source === 'env'));
  t.notOk(h.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('bundled static build')), 'no warning');
  const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
  t.match(metrics, /audio_ingestd_build_info\{[^}]*ffmpeg_source="env"\} 1/);
});
