import { parseArgs } from 'node:util';
import { tonePcm, simulateEgress, wavFileToEgressPcm } from './clients/egress-simulator.js';
import { loadConfig } from './config/load.js';
import { persistentSecret } from './config/secrets.js';
import { buildEgressUrl, egressUrlRequestSchema } from './sources/livekit-egress-urls.js';

/** Commands besides `serve`; each returns true when it handled the command name. */
export async function runCommand(command: string, args: string[]): Promise<boolean> {
  switch (command) {
    case 'egress-url':
      await egressUrlCommand(args);
      return true;
    case 'simulate-egress':
      await simulateEgressCommand(args);
      return true;
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
