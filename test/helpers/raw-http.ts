/**
 * A raw HTTP/1.1 client over node:net, for clients that misbehave precisely: partial headers,
 * bodies cut at a byte, lies in Content-Length, pipelining, aborts. It records every byte the
 * server sent, whether the connection ended with a FIN or a reset, and parses the answers.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface ParsedAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface ParseResult {
  answers: ParsedAnswer[];
  /** Bytes after the last complete answer (an answer still arriving, or garbage). */
  rest: Buffer;
  /** Set when the bytes are not a sequence of valid HTTP/1.1 answers. */
  invalid?: string;
}

/** Parses HTTP/1.1 answers with Content-Length bodies (all the daemon sends besides downloads). */
export function parseAnswers(buf: Buffer): ParseResult {
  const answers: ParsedAnswer[] = [];
  let off = 0;
  while (off < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', off);
    if (headEnd < 0) break;
    const lines = buf.toString('latin1', off, headEnd).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(lines[0] ?? '');
    if (!m) return { answers, rest: buf.subarray(off), invalid: `bad status line ${JSON.stringify(lines[0]?.slice(0, 80))}` };
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i <= 0) return { answers, rest: buf.subarray(off), invalid: `bad header line ${JSON.stringify(line.slice(0, 80))}` };
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const length = headers['content-length'];
    if (length === undefined || !/^\d+$/.test(length)) return { answers, rest: buf.subarray(off), invalid: 'answer without Content-Length' };
    const bodyStart = headEnd + 4;
    if (bodyStart + Number(length) > buf.length) break;
    answers.push({ status: Number(m[1]), headers, body: buf.subarray(bodyStart, bodyStart + Number(length)) });
    off = bodyStart + Number(length);
  }
  return { answers, rest: buf.subarray(off) };
}

/** How a raw connection ended, as far as the client saw. */
export interface RawEnd {
  /** The server's FIN arrived. */
  fin: boolean;
  /** The connection was reset (ECONNRESET/EPIPE on this side). */
  reset: boolean;
  /** Complete answers that had arrived when the reset came (undefined without a reset). */
  answersBeforeReset: number | undefined;
  /** Complete answers parsed before the end. */
  answersAtEnd: number;
}

export class RawClient {
  private readonly chunks: Buffer[] = [];
  private waiters: (() => void)[] = [];
  readonly ended: Promise<RawEnd>;
  private finSeen = false;
  private resetSeen = false;
  private answersBeforeReset: number | undefined;
  private closedFlag = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.wake();
    });
    socket.on('end', () => {
      this.finSeen = true;
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        this.resetSeen = true;
        this.answersBeforeReset ??= this.parsed().answers.length;
      }
      this.wake();
    });
    this.ended = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedFlag = true;
        this.wake();
        resolve({ fin: this.finSeen, reset: this.resetSeen, answersBeforeReset: this.answersBeforeReset, answersAtEnd: this.parsed().answers.length });
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawClient(s));
      });
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Writes and resolves once the kernel took it (false if the connection is gone). */
  write(data: string | Buffer): Promise<boolean> {
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.socket.write(data, (err) => resolve(err === undefined || err === null));
    });
  }

  /** Half-closes (sends FIN) and keeps reading. */
  end(): void {
    this.socket.end();
  }

  /** Drops the connection at once (as a crashing client does). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Resets the connection (RST), as a client killed mid-request. */
  reset(): void {
    this.socket.resetAndDestroy();
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  parsed(): ParseResult {
    return parseAnswers(this.received());
  }

  /** Resolves when `n` complete answers arrived, or the connection closed, or `timeoutMs` passed. */
  async answers(n = 1, timeoutMs = 30_000): Promise<ParsedAnswer[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.parsed();
      if (p.answers.length >= n || p.invalid || this.closedFlag || Date.now() > deadline) return p.answers;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** The head of a request: request line, headers and the blank line. */
export function requestHead(method: string, path: string, headers: Record<string, string | number>): string {
  let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  return `${head}\r\n`;
}

/** One chunk of a chunked body. */
export function chunk(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
}

/** The terminating chunk of a chunked body. */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** Deterministic pseudo-random numbers (mulberry32), so every run tries the same cases. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A WebSocket upgrade request for `target` (path and query). */
export function wsUpgradeHead(target: string): string {
  return requestHead('GET', target, { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': 13 });
}

/** One final, masked WebSocket frame as a client sends it (opcode 2 binary, 9 ping, 8 close). */
export function wsFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]);
  if (len > 0xffff) throw new RangeError('frame too large for this helper');
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, mask, masked]);
}
