import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { tonePcm, simulateEgress, wavFileToEgressPcm } from './clients/egress-simulator.js';
import { loadConfig } from './config/load.js';
import { persistentSecret } from './config/secrets.js';
import { buildEgressUrl, egressUrlRequestSchema } from './sources/livekit-egress-urls.js';
import { ConfigError } from './errors.js';
import { FsObjectStore } from './storage/fs-store.js';
import { ObjectKeys } from './storage/keys.js';
import type { ObjectStore } from './storage/object-store.js';
import { sweepRetention } from './storage/retention.js';
import { applyRetentionLifecycle } from './storage/retention-sweeper.js';
import { S3ObjectStore } from './storage/s3-store.js';

/** Commands besides `serve`; each returns true when it handled the command name. */
export async function runCommand(command: string, args: string[]): Promise<boolean> {
  switch (command) {
    case 'egress-url':
      await egressUrlCommand(args);
      return true;
    case 'simulate-egress':
      await simulateEgressCommand(args);
      return true;
    case 'retention': {
      const code = await retentionCommand(args);
      if (code !== 0) process.exitCode = code;
      return true;
    }
    default:
      return false;
  }
}

const EGRESS_URL_HELP = `Usage: audio-ingestd egress-url --room NAME [options]

Mints a WebSocket URL for LiveKit's startTrackEgress, signed with EGRESS_TOKEN_SECRET
(or the secret generated in DATA_DIR), without a running daemon.

  --room NAME          room name (required)
  --track ID           track id
  --participant ID     participant identity
  --meeting ID         meeting id (names the key folder instead of the room)
  --tenant ID          tenant (default: auth.defaultTenant)
  --group-seconds N    chunk length
  --ttl SECONDS        lifetime (default livekit.tokenTtlSec)
  --base-url URL       where egress reaches the daemon (default server.publicUrl or http://127.0.0.1:PORT)
  -c, --config FILE    config file
`;

async function egressUrlCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      room: { type: 'string' },
      track: { type: 'string' },
      participant: { type: 'string' },
      meeting: { type: 'string' },
      tenant: { type: 'string' },
      'group-seconds': { type: 'string' },
      ttl: { type: 'string' },
      'base-url': { type: 'string' },
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return void process.stdout.write(EGRESS_URL_HELP);
  const config = loadConfig({ file: values.config });
  const request = egressUrlRequestSchema.safeParse({
    roomName: values.room,
    trackId: values.track,
    participant: values.participant,
    meetingId: values.meeting,
    groupSeconds: values['group-seconds'] === undefined ? undefined : Number(values['group-seconds']),
    ttlSeconds: values.ttl === undefined ? undefined : Number(values.ttl),
  });
  if (!request.success) {
    process.stderr.write(`audio-ingestd egress-url: ${request.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}\n\n${EGRESS_URL_HELP}`);
    process.exit(64);
  }
  const secret = config.livekit.egressTokenSecret ?? persistentSecret(config.dataDir, 'egress-token-secret').value;
  const baseUrl = values['base-url'] ?? config.server.publicUrl ?? `http://127.0.0.1:${config.server.port}`;
  const out = await buildEgressUrl({ baseUrl, secret, tenant: values.tenant ?? config.auth.defaultTenant, request: request.data, defaultTtlSec: config.livekit.tokenTtlSec });
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const SIMULATE_HELP = `Usage: audio-ingestd simulate-egress --url WS_URL [options]

Streams audio to a daemon exactly as LiveKit Track Egress does: 48 kHz stereo s16le,
1 920-byte frames every 10 ms, {"muted":…} texts, pings, empty Close at the end.

  --url URL            egress WebSocket URL (from POST /v1/egress/urls or 'egress-url')
  --wav FILE           16-bit PCM WAV to send (mono is duplicated to stereo; 48 kHz expected)
  --tone HZ            send a sine tone instead (default 440)
  --seconds N          tone length (default 5)
  --mute START:DUR     mute span in seconds (repeatable)
  --legacy-mute        send bare true/false instead of {"muted":…}
  --stall START:DUR    stop sending, then catch up in a burst
  --drop               end with a dropped TCP connection instead of a Close frame
  --fast               do not pace in real time
`;

async function simulateEgressCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      wav: { type: 'string' },
      tone: { type: 'string' },
      seconds: { type: 'string' },
      mute: { type: 'string', multiple: true },
      'legacy-mute': { type: 'boolean' },
      stall: { type: 'string' },
      drop: { type: 'boolean' },
      fast: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return void process.stdout.write(SIMULATE_HELP);
  if (!values.url) {
    process.stderr.write(`audio-ingestd simulate-egress: --url is required\n\n${SIMULATE_HELP}`);
    process.exit(64);
  }
  const span = (text: string): { atSec: number; durationSec: number } => {
    const [a, d] = text.split(':').map(Number);
    if (!Number.isFinite(a) || !Number.isFinite(d)) throw new Error(`expected START:DURATION in seconds, got '${text}'`);
    return { atSec: a!, durationSec: d! };
  };
  let pcm: Buffer;
  let sampleRate = 48000;
  if (values.wav) ({ pcm, sampleRate } = await wavFileToEgressPcm(values.wav));
  else pcm = tonePcm(Number(values.seconds ?? 5), Number(values.tone ?? 440));
  const result = await simulateEgress({
    url: values.url,
    pcm,
    sampleRate,
    realtime: !values.fast,
    mutes: (values.mute ?? []).map(span),
    legacyMuteText: values['legacy-mute'] ?? false,
    ...(values.stall ? { stall: span(values.stall) } : {}),
    end: values.drop ? 'drop' : 'normal',
  });
  process.stdout.write(`${JSON.stringify({ bytesSent: result.bytesSent, framesSent: result.framesSent, textSent: result.textSent, closeCode: result.closeCode })}\n`);
}

const RETENTION_HELP = `Usage: audio-ingestd retention <apply|sweep> [options]

Deletes recordings older than storage.retentionDays (RETENTION_DAYS).

  apply                installs an S3 lifecycle rule expiring objects under storage.prefix after
                       retentionDays (other rules of the bucket are kept). For the fs driver, or an
                       endpoint without lifecycle support, says so: the daemon's hourly sweep is used.
  sweep                deletes the expired objects now (safe while daemons run: it is idempotent)
  -c, --config FILE    config file
`;

/** Where a command writes, and the environment it reads (tests pass their own). */
export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const processIo: CommandIo = { stdout: (t) => void process.stdout.write(t), stderr: (t) => void process.stderr.write(t), env: process.env };

/** `audio-ingestd retention apply|sweep`; resolves with the exit code. */
export async function retentionCommand(args: string[], io: CommandIo = processIo): Promise<number> {
  const out = (text: string, code = 0): number => {
    (code === 0 ? io.stdout : io.stderr)(text);
    return code;
  };
  const [action, ...rest] = args;
  const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help || action === '--help' || action === '-h') return out(RETENTION_HELP);
  if (action !== 'apply' && action !== 'sweep') return out(`audio-ingestd retention: expected 'apply' or 'sweep'\n\n${RETENTION_HELP}`, 64);
  let config;
  try {
    config = loadConfig({ file: values.config, env: io.env });
  } catch (err) {
    if (err instanceof ConfigError) return out(`audio-ingestd: ${err.message}\n`, 78);
    throw err;
  }
  const { storage } = config;
  const prefix = new ObjectKeys({ prefix: storage.prefix }).prefix;
  const where = prefix === '' ? 'the whole store' : `'${prefix}'`;
  if (storage.retentionDays === 0) return out('retention is off (storage.retentionDays is 0): nothing expires\n');
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = io.env;
  const credentials = accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined;
  const s3 = { ...storage.s3, ...(credentials ? { credentials } : {}) };
  try {
    if (action === 'apply') {
      const fallback = `the daemon's periodic retention sweep deletes objects under ${where} older than ${storage.retentionDays} days instead\n`;
      if (storage.driver === 'fs') return out(`fs store: no lifecycle rules; ${fallback}`);
      const outcome = await applyRetentionLifecycle(s3, prefix, storage.retentionDays);
      if (!outcome.applied) return out(`bucket ${s3.bucket} does not support lifecycle rules (${outcome.reason}); ${fallback}`);
      io.stdout(`lifecycle rule '${outcome.rule.ID}' installed on bucket ${s3.bucket}: objects under ${where} expire after ${storage.retentionDays} days (${outcome.keptRules} other rule(s) kept)\n`);
      return 0;
    }
    const store: ObjectStore =
      storage.driver === 's3'
        ? new S3ObjectStore(s3)
        : new FsObjectStore({ root: join(resolve(config.dataDir), 'store') }); // only deletes: no presigning
    await store.start();
    try {
      const deleted = await sweepRetention(store, prefix, storage.retentionDays);
      io.stdout(`deleted ${deleted} object(s) under ${where} older than ${storage.retentionDays} days\n`);
      return 0;
    } finally {
      await store.stop();
    }
  } catch (err) {
    io.stderr(`audio-ingestd retention ${action}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
