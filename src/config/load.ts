import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ENV_MAP, type EnvKind, envNameOf, isSecret } from './env-map.js';
import { parseConfig } from './parse.js';
import { type Config, SECRET_PATHS } from './schema.js';

export { ENV_MAP, isSecret } from './env-map.js';

export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../config/default.json', import.meta.url));

export interface LoadOptions {
  /** `--config` file; falls back to env AUDIO_INGEST_CONFIG. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** The embedded defaults file (tests point it elsewhere). */
  defaultFile?: string;
}

/**
 * config/default.json < `--config` / AUDIO_INGEST_CONFIG < environment, validated by
 * {@link parseConfig}. Every problem is collected and reported in one ConfigError.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  const merged: Record<string, unknown> = {};

  const readJson = (file: string, label: string): Record<string, unknown> | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push(`${label} ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return undefined;
    }
    try {
      const value: unknown = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        problems.push(`${label} ${file}: must hold a JSON object`);
        return undefined;
      }
      return value as Record<string, unknown>;
    } catch (err) {
      problems.push(`${label} ${file}: invalid JSON (${(err as Error).message})`);
      return undefined;
    }
  };

  const defaults = readJson(options.defaultFile ?? DEFAULT_CONFIG_FILE, 'defaults file');
  if (defaults) deepMerge(merged, defaults);
  const file = options.file ?? env.AUDIO_INGEST_CONFIG;
  if (file) {
    const fromFile = readJson(file, 'config file');
    if (fromFile) {
      for (const secret of SECRET_PATHS) {
        if (getPath(fromFile, secret) !== undefined) {
          problems.push(`${secret}: secrets are not read from config files; set ${envNameOf(secret)} (or ${envNameOf(secret)}_FILE) instead`);
          deletePath(fromFile, secret);
        }
      }
      deepMerge(merged, fromFile);
    }
  }

  for (const [name, path, kind] of ENV_MAP) {
    let raw = env[name];
    const fileVar = env[`${name}_FILE`];
    if ((raw === undefined || raw === '') && fileVar) {
      try {
        raw = readFileSync(fileVar, 'utf8').trim();
      } catch (err) {
        problems.push(`${name}_FILE=${fileVar}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
        continue;
      }
    }
    if (raw === undefined || raw === '') continue;
    const parsed = parseEnv(raw, kind);
    if (parsed === undefined) {
      const shown = isSecret(path) ? '<redacted>' : JSON.stringify(raw);
      problems.push(`${name} (${path}): got ${shown}; allowed: ${describeKind(kind)}`);
      continue;
    }
    setPath(merged, path, parsed);
  }

  return parseConfig(merged, problems);
}

function parseEnv(raw: string, kind: EnvKind): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'int':
      return /^-?\d+$/.test(raw.trim()) ? Number(raw) : undefined;
    case 'number': {
      const n = Number(raw);
      return raw.trim() !== '' && Number.isFinite(n) ? n : undefined;
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      return undefined;
    }
  }
}

function describeKind(kind: EnvKind): string {
  return kind === 'int' ? 'an integer' : kind === 'number' ? 'a number' : kind === 'bool' ? 'true/false/1/0/yes/no' : 'text';
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    const cur = target[k];
    if (isPlainObject(v) && isPlainObject(cur)) deepMerge(cur, v);
    else target[k] = isPlainObject(v) ? structuredClone(v) : v;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(cur[part])) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function deletePath(obj: Record<string, unknown>, path: string): void {
  const parts = path.split('.');
  const parent = getPath(obj, parts.slice(0, -1).join('.'));
  if (isPlainObject(parent)) delete parent[parts[parts.length - 1]!];
}
