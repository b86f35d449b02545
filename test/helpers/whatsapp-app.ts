/**
 * Helpers for the WhatsApp voice-note tests: posting media, reading what the daemon stored
 * and announced, and watching its ffmpeg children.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseWav } from '../../src/audio/wav.js';
import type { App } from '../../src/app.js';
import { TEST_API_KEY } from './app.js';

const run = promisify(execFile);

export interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** Headers of a well-formed upload; `overrides` may set a value to undefined to drop it. */
export function audioHeaders(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const base: Record<string, string | undefined> = {
    apikey: TEST_API_KEY,
    'content-type': 'audio/ogg; codecs=opus',
    'x-instance': 'inst-1',
    'x-chat-id': '5511999990000@s.whatsapp.net',
    'x-message-id': `MSG${Math.random().toString(16).slice(2, 14).toUpperCase()}`,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined));
}

/** POST /v1/whatsapp/audio with a whole body. */
export async function postAudio(baseUrl: string, body: Buffer, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${baseUrl}/v1/whatsapp/audio`, { method: 'POST', headers, body });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** POST JSON to a path. */
export async function postJson(baseUrl: string, path: string, value: unknown, headers: Record<string, string> = { apikey: TEST_API_KEY }): Promise<Answer> {
  const res = await fetch(`${baseUrl}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(value) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

export function sha256Base64(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('base64');
}

/**
 * Starts an upload with node:http, writes `first` and keeps the request open: the caller
 * decides whether to finish or abort it. `response` settles when the daemon answers.
 */
export function openUpload(baseUrl: string, headers: Record<string, string>, first: Buffer): { response: Promise<Answer>; end(rest?: Buffer): void; abort(): void } {
  const url = new URL(`${baseUrl}/v1/whatsapp/audio`);
  const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' } });
  const response = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: h, body: JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown> });
      });
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  req.write(first);
  return {
    response,
    end: (rest) => req.end(rest),
    abort: () => {
      response.catch(() => undefined);
      req.destroy();
    },
  };
}

/** Every event the daemon wrote: outbox segments (`{seq, event}` lines) and any NDJSON event log, by id. */
export function readEvents(dataDir: string): Record<string, unknown>[] {
  const byId = new Map<string, Record<string, unknown>>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (name === 'store') continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ndjson')) {
        for (const line of readFileSync(p, 'utf8').split('\n')) {
          if (line.trim() === '') continue;
          let v: Record<string, unknown>;
          try {
            v = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue; // a torn last line
          }
          const e = (typeof v['event'] === 'object' && v['event'] !== null ? v['event'] : v) as Record<string, unknown>;
          if (typeof e['id'] === 'string' && typeof e['type'] === 'string') byId.set(e['id'], e);
        }
      }
    }
  };
  walk(dataDir);
  return [...byId.values()];
}

export function eventsOfType(dataDir: string, type: string): Record<string, unknown>[] {
  return readEvents(dataDir).filter((e) => e['type'] === type);
}

/** Keys of every stored WhatsApp object. */
export async function storedKeys(app: App): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of app.store.list('whatsapp/')) keys.push(o.key);
  return keys;
}

/** A stored WAV, parsed: format and duration. */
export async function storedWav(app: App, key: string): Promise<{ sampleRate: number; channels: number; durationSec: number; bytes: Buffer }> {
  const bytes = await app.store.get(key);
  const w = parseWav(bytes);
  return { sampleRate: w.format.sampleRate, channels: w.format.channels, durationSec: w.dataBytes / (2 * w.format.channels * w.format.sampleRate), bytes };
}

/** ffmpeg processes that are children of this (test) process, i.e. of the in-process daemon. */
export async function ffmpegChildren(): Promise<number> {
  try {
    const { stdout } = await run('pgrep', ['-P', String(process.pid), 'ffmpeg']);
    return stdout.split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}
