import { pino, type Logger, type DestinationStream } from 'pino';
import { SECRET_PATHS } from '../config/schema.js';

export type { Logger };

/** Field names that never reach a log line, wherever they appear. */
const REDACT = [
  ...SECRET_PATHS.map((p) => `config.${p}`),
  ...SECRET_PATHS.map((p) => p),
  'apiKey',
  'secret',
  'token',
  'password',
  'authorization',
  'headers.authorization',
  'headers.apikey',
  'req.headers.authorization',
  'req.headers.apikey',
  '*.apiKey',
  '*.secret',
  '*.token',
  '*.password',
  '*.authorization',
  '*.apikey',
];

export interface LoggerOptions {
  level: string;
  pretty?: boolean;
  /** Where lines go (tests capture them); default stdout. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: { service: 'audio-ingestd' },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (options.destination) return pino(base, options.destination);
  if (options.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(base);
}

/** Removes credentials from a URL before it is logged (amqp://user:pass@host → amqp://user:***@host). */
export function redactUrl(url: string | undefined): string | undefined {
  if (!url) return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of ['token', 'signature', 'X-Amz-Signature', 'X-Amz-Credential']) if (u.searchParams.has(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
