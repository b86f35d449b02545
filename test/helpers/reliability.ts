import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import WebSocket from 'ws';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { AMQP_URL } from './events-amqp.js';

const run = promisify(execFile);

/** Secrets every child daemon of these tests runs with (see startDaemon). */
export const E2E_API_KEY = 'e2e-api-key-0123456789';
export const E2E_EGRESS_SECRET = 'e2e-egress-secret-0123456789abcdef0123';

/** One measured fault, as a line of the reliability report (scripts/reliability-report.mjs). */
export interface ReliabilityFigure {
  /** Short name of the fault or input. */
  fault: string;
  /** What the test checked, in one sentence. */
  checked: string;
  bytesSent?: number;
  bytesStored?: number;
  samplesLost?: number;
  eventsExpected?: number;
  eventsDelivered?: number;
  /** Anything else worth a column (durations, counts). */
  notes?: string;
  /** Chaos runs: what was tried and what the daemon went through. */
  chaos?: { tries: number; behaviours: number; routes: number; crashes: number; worstHealthMs: number; worstEventLoopMs: number; fdsBefore: number; fdsAfter: number; ffmpegBefore: number; ffmpegAfter: number; problems: number };
  /** Computed from the measurement, never a literal: the report shows a failure as a failure. */
  ok: boolean;
}

/** Where figures go: $RELIABILITY_REPORT, else .tap/reliability.ndjson at the repository root. */
export const REPORT_PATH = process.env.RELIABILITY_REPORT ?? join(import.meta.dirname, '..', '..', '.tap', 'reliability.ndjson');

export function reportFigure(figure: ReliabilityFigure): void {
  mkdirSync(dirname(REPORT_PATH), { recursive: true });
  appendFileSync(REPORT_PATH, `${JSON.stringify({ at: new Date().toISOString(), ...figure })}\n`);
}

/** Writes a daemon config file (for keys that have no environment variable) and returns its path. */
export function configFile(config: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'aid-rel-cfg-'));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/** An egress URL for a child daemon, minted with its secret (no HTTP round trip). */
export async function daemonEgressUrl(port: number, claims: { roomName: string; trackId?: string; participant?: string; tenant?: string }, secret = E2E_EGRESS_SECRET): Promise<string> {
  const { token } = await mintEgressToken(secret, { tenant: claims.tenant ?? 'default', ...claims }, 600);
  return `ws://127.0.0.1:${port}/egress-audio?token=${encodeURIComponent(token)}`;
}

/**
 * Sends `pcm` as 10 ms egress frames at `speed` × real time on an open socket. `stopAtBytes`,
 * or `until` returning true, stops early and resolves with what was sent; the socket stays open.
 */
export async function sendPaced(ws: WebSocket, pcm: Buffer, options: { speed: number; frameBytes?: number; stopAtBytes?: number; until?: () => boolean; onProgress?: (sent: number) => void }): Promise<number> {
  const frame = options.frameBytes ?? 1920;
  const limit = Math.min(pcm.length, options.stopAtBytes ?? pcm.length);
  const bytesPerMs = (192_000 * options.speed) / 1000;
  const started = performance.now();
  let sent = 0;
  while (sent < limit && ws.readyState === WebSocket.OPEN && options.until?.() !== true) {
    const due = Math.min(limit, Math.floor(((performance.now() - started) * bytesPerMs) / frame) * frame + frame);
    while (sent < due && ws.readyState === WebSocket.OPEN) {
      const n = Math.min(frame, limit - sent);
      ws.send(pcm.subarray(sent, sent + n), { binary: true });
      sent += n;
    }
    options.onProgress?.(sent);
    await new Promise((r) => setTimeout(r, 10));
  }
  while (ws.bufferedAmount > 0 && ws.readyState === WebSocket.OPEN) await new Promise((r) => setTimeout(r, 5));
  return sent;
}

/** Opens an egress socket and resolves its close code when it closes. */
export async function openEgress(url: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = await connectEgress(url);
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  return { ws, closed };
}

/** Events of a daemon without a broker: its NDJSON log (torn lines skipped). */
export function ndjsonEvents(dataDir: string): Record<string, unknown>[] {
  const file = join(dataDir, 'events.ndjson');
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // torn last line
    }
  }
  return out;
}

/** Parsed log lines of a child daemon. */
export function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Bytes of PCM a master upload holds in the spool: part files plus parts already uploaded (manifest). */
export function spooledBytes(dataDir: string): { recordingId: string; bytes: number }[] {
  const root = join(dataDir, 'uploads');
  if (!existsSync(root)) return [];
  return readdirSync(root).map((name) => {
    const dir = join(root, name);
    let bytes = 0;
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { recordingId: string; dataOffset: number; parts: { partNumber: number; dataBytes: number }[] };
    // an uploaded part whose file is kept (the live resume window) counts once, as uploaded
    const uploaded = new Set(manifest.parts.map((p) => `part-${String(p.partNumber).padStart(6, '0')}.pcm`));
    // part 1's file starts with the room reserved for the header (manifest.dataOffset bytes)
    for (const f of readdirSync(dir)) if (/^part-\d{6}\.pcm$/.test(f) && !uploaded.has(f)) bytes += Math.max(0, statSync(join(dir, f)).size - (f === 'part-000001.pcm' ? manifest.dataOffset : 0));
    for (const p of manifest.parts) bytes += p.dataBytes;
    return { recordingId: manifest.recordingId, bytes };
  });
}

export type FaultDecision = 'pass' | { status: number; code: string } | { delayMs: number } | { dropAfterForward: number };

/**
 * An HTTP proxy in front of an S3 endpoint that injects faults: per request, `decide` says
 * whether to forward it, answer an S3 error without forwarding it, forward it after a delay,
 * or forward it and replace the answer with an error (the request took effect, the answer was lost).
 */
export interface FaultProxy {
  endpoint: string;
  counts: { requests: number; injected: number; delayed: number; lostAnswers: number };
  close(): Promise<void>;
}

export async function startFaultProxy(target: string, decide: (method: string, url: URL, n: number) => FaultDecision): Promise<FaultProxy> {
  const t = new URL(target);
  const counts = { requests: 0, injected: 0, delayed: 0, lostAnswers: 0 };
  const errorBody = (code: string): string => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message></Error>`;
  const server = http.createServer((req, res) => {
    const n = counts.requests++;
    const url = new URL(req.url ?? '/', 'http://proxy');
    const d = decide(req.method ?? 'GET', url, n);
    const forward = (onAnswer: (up: http.IncomingMessage) => void): void => {
      const upstream = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, onAnswer);
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    const pass = (): void => forward((up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    if (d === 'pass') return pass();
    if ('status' in d) {
      counts.injected++;
      req.resume();
      req.on('end', () => res.writeHead(d.status, { 'content-type': 'application/xml' }).end(errorBody(d.code)));
      return;
    }
    if ('delayMs' in d) {
      counts.delayed++;
      req.pause();
      setTimeout(pass, d.delayMs);
      return;
    }
    counts.lostAnswers++;
    forward((up) => {
      up.resume();
      up.on('end', () => res.writeHead(d.dropAfterForward, { 'content-type': 'application/xml' }).end(errorBody('InternalError')));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A RabbitMQ virtual host of its own, so a test can take "the broker" away from one daemon
 * (permissions revoked, its connections closed) without touching anyone else's connections.
 */
export interface IsolatedBroker {
  vhost: string;
  url: string;
  /** The broker refuses this vhost: permissions cleared, the daemon's connections closed. */
  down(): Promise<number>;
  up(): Promise<void>;
  /** Deletes the vhost and everything declared in it. */
  remove(): Promise<void>;
}

export async function isolatedBroker(label: string): Promise<IsolatedBroker> {
  const vhost = `aid-rel-${label}-${randomUUID().slice(0, 8)}`;
  const user = new URL(AMQP_URL).username || 'guest';
  const ctl = (...args: string[]): Promise<{ stdout: string }> => run('rabbitmqctl', ['-q', ...args]);
  await ctl('add_vhost', vhost);
  const grant = (): Promise<unknown> => ctl('set_permissions', '-p', vhost, user, '.*', '.*', '.*');
  await grant();
  const base = new URL(AMQP_URL);
  base.pathname = `/${encodeURIComponent(vhost)}`;
  return {
    vhost,
    url: base.toString(),
    async down() {
      await ctl('clear_permissions', '-p', vhost, user);
      const { stdout } = await ctl('list_connections', 'pid', 'vhost', 'client_properties');
      const pids = stdout
        .split('\n')
        .filter((l) => l.split('\t')[1] === vhost && /"connection_name","audio-ingestd/.test(l))
        .map((l) => l.split('\t')[0]!);
      for (const pid of pids) await ctl('close_connection', pid, 'reliability test: broker down');
      return pids.length;
    },
    async up() {
      await grant();
    },
    async remove() {
      await ctl('delete_vhost', vhost).catch(() => undefined);
    },
  };
}

/** A consumer of every event of an exchange in a vhost, deduplicating on the event id. */
export class EventCollector {
  readonly byId = new Map<string, Record<string, unknown>>();
  deliveries = 0;
  private constructor(
    private readonly model: ChannelModel,
    readonly channel: Channel,
  ) {}

  static async open(url: string, exchange: string): Promise<EventCollector> {
    const model = await connect(url, { clientProperties: { connection_name: 'reliability-collector' } });
    const channel = await model.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, exchange, '#');
    const c = new EventCollector(model, channel);
    await channel.consume(
      queue,
      (m) => {
        if (!m) return;
        c.deliveries++;
        const e = JSON.parse(m.content.toString()) as Record<string, unknown>;
        c.byId.set(e.id as string, e);
      },
      { noAck: true },
    );
    return c;
  }

  ofType(type: string): Record<string, unknown>[] {
    return [...this.byId.values()].filter((e) => e.type === type);
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => undefined);
  }
}

/** Prometheus value of one series from a /metrics text (labels as printed, in order). */
export function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
