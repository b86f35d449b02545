import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

/** A fresh directory removed when the test ends. */
export async function stateDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'audio-ingestd-limits-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
