import { parseArgs } from 'node:util';
import { VERSION } from './app.js';
import { serve } from './main.js';

const HELP = `audio-ingestd ${VERSION}

Usage: audio-ingestd [command] [options]

Commands:
  serve                       run the daemon (default)
  egress-url                  mint a WebSocket URL for LiveKit's startTrackEgress
  simulate-egress             stream audio to a daemon as LiveKit Track Egress does
  retention apply|sweep       install the S3 lifecycle rule for storage.retentionDays, or sweep once now

Options:
  -c, --config FILE           config file (also AUDIO_INGEST_CONFIG)
  -h, --help                  this help
  -v, --version               print the version

Run 'audio-ingestd <command> --help' for a command's options.
`;

export async function runCli(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  const command = first && !first.startsWith('-') ? first : 'serve';
  const args = command === first ? rest : argv;
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({
        args,
        options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
        strict: true,
      });
      if (values.help) return void process.stdout.write(HELP);
      if (values.version) return void process.stdout.write(`${VERSION}\n`);
      await serve(values.config);
      return;
    }
    default: {
      const extra = await import('./cli-commands.js');
      const handled = await extra.runCommand(command, args);
      if (!handled) {
        process.stderr.write(`audio-ingestd: unknown command '${command}'\n\n${HELP}`);
        process.exit(64);
      }
    }
  }
}
