#!/usr/bin/env node
import { runCli } from '../dist/cli.js';

runCli(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`audio-ingestd: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
