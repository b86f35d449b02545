import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Reads a generated secret from `<dataDir>/secrets/<name>`, creating it (mode 0600) on first
 * use, so the embedded defaults run with no environment and still keep working after a restart.
 */
export function persistentSecret(dataDir: string, name: string): { value: string; path: string; created: boolean } {
  const dir = join(dataDir, 'secrets');
  const path = join(dir, name);
  try {
    const value = readFileSync(path, 'utf8').trim();
    if (value.length >= 32) return { value, path, created: false };
  } catch {
    // not there yet
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const value = randomBytes(32).toString('base64url');
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return { value, path, created: true };
}
