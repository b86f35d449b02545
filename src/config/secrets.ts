import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.js';
import type { Config } from './schema.js';

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

/** The secrets in force: from the config (environment), else generated into `<dataDir>/secrets/`. */
export interface Secrets {
  /** Key of the default tenant; undefined when only TENANTS_FILE keys are accepted. */
  apiKey: string | undefined;
  egressTokenSecret: string;
  /** Signs the fs driver's presigned object URLs; always generated (one host serves them). */
  objectUrlSecret: string;
}

/**
 * Reads or creates the secrets the config leaves unset (so the embedded defaults run with no
 * environment), logging where a generated one is kept.
 */
export function loadSecrets(config: Config, dataDir: string, logger: Logger): Secrets {
  let apiKey: string | undefined;
  if (config.auth.apiKey) apiKey = config.auth.apiKey;
  else if (!config.auth.tenantsFile) {
    const s = persistentSecret(dataDir, 'api-key');
    apiKey = s.value;
    logger.warn({ path: s.path, created: s.created }, 'API_KEY not set: using the generated key stored in this file');
  }
  let egressTokenSecret: string;
  if (config.livekit.egressTokenSecret) egressTokenSecret = config.livekit.egressTokenSecret;
  else {
    const s = persistentSecret(dataDir, 'egress-token-secret');
    egressTokenSecret = s.value;
    logger.warn({ path: s.path, created: s.created }, 'EGRESS_TOKEN_SECRET not set: using the generated secret stored in this file (other hosts cannot verify its tokens)');
  }
  return { apiKey, egressTokenSecret, objectUrlSecret: persistentSecret(dataDir, 'object-url-secret').value };
}
