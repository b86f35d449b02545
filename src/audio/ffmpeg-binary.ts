import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';

/** Where the ffmpeg that decodes untrusted media comes from. */
export type FfmpegSource = 'env' | 'system' | 'bundled';

/** The decoder binary in use: its path, where it was found, and its version once probed. */
export interface FfmpegBinary {
  path: string;
  source: FfmpegSource;
}

let bundled: string | null | undefined;
let systemCache: { pathEnv: string; found: string | undefined } | undefined;

/** The static build shipped by @ffmpeg-installer (2018), or null when the package is absent. */
export function bundledFfmpeg(): string | null {
  if (bundled === undefined) {
    try {
      const mod = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path?: unknown };
      bundled = typeof mod.path === 'string' ? mod.path : null;
    } catch {
      bundled = null;
    }
  }
  return bundled;
}

/** `ffmpeg` as an executable in one of PATH's directories (the distribution's package), or undefined. */
export function systemFfmpeg(pathEnv: string = process.env.PATH ?? ''): string | undefined {
  if (systemCache?.pathEnv === pathEnv) return systemCache.found;
  let found: string | undefined;
  for (const d of pathEnv.split(delimiter)) {
    if (d === '') continue;
    const f = join(d, 'ffmpeg');
    try {
      accessSync(f, constants.X_OK);
      found = f;
      break;
    } catch {
      // not in this directory
    }
  }
  systemCache = { pathEnv, found };
  return found;
}

/**
 * The decoder: `FFMPEG_PATH` when set, else the system's ffmpeg on PATH (security-patched by
 * the distribution), else the bundled 2018 static build; `ffmpeg` (to fail at spawn) when none.
 */
export function resolveFfmpeg(env: NodeJS.ProcessEnv = process.env): FfmpegBinary {
  const fromEnv = env.FFMPEG_PATH;
  if (fromEnv !== undefined && fromEnv !== '') return { path: fromEnv, source: 'env' };
  const sys = systemFfmpeg(env.PATH ?? '');
  if (sys !== undefined) return { path: sys, source: 'system' };
  return { path: bundledFfmpeg() ?? 'ffmpeg', source: 'bundled' };
}

/** The path of {@link resolveFfmpeg}'s binary. */
export function ffmpegPath(): string {
  return resolveFfmpeg().path;
}

/**
 * The version ffmpeg reports (`ffmpeg version <this> …`), e.g. `5.1.9-0+deb12u1` or
 * `N-47683-g0e8eb07980-static`; rejects when the binary cannot run.
 */
export function ffmpegVersion(path: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, ['-hide_banner', '-version'], { timeout: timeoutMs, env: {}, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err !== null) return reject(err);
      const m = /^ffmpeg version (\S+)/m.exec(stdout);
      resolve(m?.[1] ?? 'unknown');
    });
  });
}
