/**
 * WhatsApp's media CDN, impersonated on 127.0.0.1 for the real Baileys library: media is
 * encrypted with Baileys' own `encryptedStream` (the key derivation and AES-CBC + HMAC layout
 * WhatsApp uses), served over HTTPS with a self-signed certificate for `mmg.whatsapp.net`, and
 * reached through an agent whose `lookup` resolves that host (and only that host) to 127.0.0.1.
 * Messages are real protobuf: built as `proto.WebMessageInfo`, encoded and decoded again, so
 * absent fields read as protobuf defaults exactly as in a bot.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, createServer, type Server } from 'node:https';
import { createRequire } from 'node:module';
import type { LookupFunction, Socket } from 'node:net';
import type * as Baileys from '@whiskeysockets/baileys';
import { selfSignedCertificate } from './tls-cert.js';

// Baileys is CommonJS; its `proto` namespace is not visible to ESM named imports.
const baileys = createRequire(import.meta.url)('@whiskeysockets/baileys') as typeof Baileys;
export const { proto, downloadMediaMessage, encryptedStream, getMediaKeys, toBuffer } = baileys;
export type WAMessage = Baileys.WAMessage;

export const CDN_HOST = 'mmg.whatsapp.net';

/** What the CDN does with one request for a path. */
export type CdnAnswer =
  | 'serve'
  /** Answer with this status and no media. */
  | { status: number }
  /** Send this many bytes of the file, then drop the TCP connection. */
  | { dropAfter: number }
  /** Send this many bytes, then nothing more, keeping the connection open. */
  | { stallAfter: number }
  /** Send the file `bytes` at a time every `everyMs`. */
  | { trickle: { bytes: number; everyMs: number } };

/** Media published on the CDN, as an `audioMessage` carries it. */
export interface PublishedMedia {
  url: string;
  directPath: string;
  mediaKey: Buffer;
  fileSha256: Buffer;
  fileEncSha256: Buffer;
  fileLength: number;
  /** The encrypted file as served (ciphertext + 10-byte MAC). */
  encrypted: Buffer;
}

export interface VoiceNoteFields {
  id: string;
  remoteJid?: string;
  seconds?: number;
  ptt?: boolean;
  mimetype?: string;
  messageTimestamp?: number;
  /** Fields left out of the protobuf (present-but-zero is given with the field's value instead). */
  omit?: ('seconds' | 'fileLength' | 'messageTimestamp' | 'ptt' | 'fileSha256' | 'mimetype')[];
  /** A media key other than the one the media was encrypted with. */
  mediaKey?: Buffer;
  /** Put the audio inside `ephemeralMessage`, as in a chat with disappearing messages. */
  ephemeral?: boolean;
}

export class WhatsAppCdn {
  /** Axios options for Baileys' `downloadMediaMessage(msg, 'stream', { options })`. */
  readonly axiosOptions: { httpsAgent: Agent; proxy: false };
  /** Sockets the server holds open now. */
  readonly sockets = new Set<Socket>();
  /** Host names the agent was asked to resolve. */
  readonly lookups: string[] = [];
  private readonly files = new Map<string, Buffer>();
  private readonly scripts = new Map<string, CdnAnswer[]>();
  private readonly hitCount = new Map<string, number>();
  private reuploads = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    ca: string,
  ) {
    const lookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      this.lookups.push(hostname);
      if (hostname !== CDN_HOST) {
        callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname }));
      } else if (options.all === true) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as unknown as LookupFunction;
    // keepAlive off: each download is its own connection, so a dropped one says which request it was.
    this.axiosOptions = { httpsAgent: new Agent({ ca, lookup, keepAlive: false }), proxy: false };
  }

  static async start(): Promise<WhatsAppCdn> {
    const { cert, key } = selfSignedCertificate([CDN_HOST]);
    const server = createServer({ cert, key });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const cdn = new WhatsAppCdn(server, (server.address() as { port: number }).port, cert);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => cdn.answer(req.url ?? '/', res));
    server.on('connection', (socket: Socket) => {
      cdn.sockets.add(socket);
      socket.once('close', () => cdn.sockets.delete(socket));
    });
    return cdn;
  }

  /** Encrypts `media` as WhatsApp does for audio (Baileys' `encryptedStream`) and publishes it. */
  async publish(media: Buffer): Promise<PublishedMedia> {
    const enc = await encryptedStream(media, 'audio');
    const encrypted = await toBuffer(enc.encWriteStream);
    const directPath = this.freshPath();
    this.files.set(directPath, encrypted);
    return {
      url: this.urlOf(directPath),
      directPath,
      mediaKey: enc.mediaKey,
      fileSha256: enc.fileSha256,
      fileEncSha256: enc.fileEncSha256,
      fileLength: enc.fileLength,
      encrypted,
    };
  }

  /** The next answers for `directPath`, one per request; plain serving once they are used up. */
  script(directPath: string, ...answers: CdnAnswer[]): void {
    this.scripts.set(directPath, [...(this.scripts.get(directPath) ?? []), ...answers]);
  }

  /** Requests the CDN received for `directPath`. */
  hits(directPath: string): number {
    return this.hitCount.get(directPath) ?? 0;
  }

  get reuploadRequests(): number {
    return this.reuploads;
  }

  /**
   * What `sock.updateMediaMessage` achieves: the sender's phone uploads the same encrypted file
   * again under a new path, and the message is pointed at it (Baileys sets `directPath` and
   * `url`; here the URL keeps the CDN's port). The old path is left as it was (gone).
   */
  readonly reuploadRequest = async (msg: WAMessage): Promise<WAMessage> => {
    this.reuploads++;
    const audio = findAudio(msg);
    const old = this.files.get(audio.directPath ?? '');
    if (old === undefined) throw new Error(`reupload: ${audio.directPath} was never published`);
    const directPath = this.freshPath();
    this.files.set(directPath, old);
    audio.directPath = directPath;
    audio.url = this.urlOf(directPath);
    return msg;
  };

  async close(): Promise<void> {
    this.axiosOptions.httpsAgent.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(url: string, res: ServerResponse): void {
    const directPath = url;
    this.hitCount.set(directPath, this.hits(directPath) + 1);
    const file = this.files.get(directPath);
    const next = this.scripts.get(directPath)?.shift() ?? 'serve';
    if (file === undefined || (typeof next === 'object' && 'status' in next)) {
      const status = file === undefined ? 404 : (next as { status: number }).status;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`status ${status}`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.length });
    if (next === 'serve') {
      res.end(file);
    } else if ('dropAfter' in next) {
      res.write(file.subarray(0, next.dropAfter), () => setTimeout(() => res.socket?.destroy(), 20));
    } else if ('stallAfter' in next) {
      res.write(file.subarray(0, next.stallAfter));
    } else {
      const { bytes, everyMs } = next.trickle;
      let offset = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        const end = Math.min(file.length, offset + bytes);
        res.write(file.subarray(offset, end));
        offset = end;
        if (offset === file.length) {
          clearInterval(timer);
          res.end();
        }
      }, everyMs);
      res.once('close', () => clearInterval(timer));
    }
  }

  private freshPath(): string {
    const name = randomBytes(24).toString('base64url');
    return `/v/t62.7117-24/${name}.enc?ccb=11-4&oh=01_${randomBytes(8).toString('hex')}&oe=6700A1B2&_nc_sid=5e03e0&mms3=true`;
  }

  private urlOf(directPath: string): string {
    return `https://${CDN_HOST}:${this.port}${directPath}`;
  }
}

function findAudio(msg: WAMessage): Baileys.proto.Message.IAudioMessage {
  const audio = msg.message?.audioMessage ?? msg.message?.ephemeralMessage?.message?.audioMessage;
  if (!audio) throw new Error('not an audio message');
  return audio;
}

/**
 * A real `proto.WebMessageInfo` for `media`, as a bot receives it: built, encoded to the wire
 * format and decoded again.
 */
export function voiceNoteMessage(media: PublishedMedia, fields: VoiceNoteFields): WAMessage {
  const omit = new Set(fields.omit ?? []);
  const audio: Baileys.proto.Message.IAudioMessage = {
    url: media.url,
    directPath: media.directPath,
    mediaKey: fields.mediaKey ?? media.mediaKey,
    fileEncSha256: media.fileEncSha256,
    mediaKeyTimestamp: 1718000000,
  };
  if (!omit.has('mimetype')) audio.mimetype = fields.mimetype ?? 'audio/ogg; codecs=opus';
  if (!omit.has('fileSha256')) audio.fileSha256 = media.fileSha256;
  if (!omit.has('fileLength')) audio.fileLength = media.fileLength;
  if (!omit.has('seconds')) audio.seconds = fields.seconds ?? 6;
  if (!omit.has('ptt')) audio.ptt = fields.ptt ?? true;
  const content: Baileys.proto.IMessage = fields.ephemeral === true ? { ephemeralMessage: { message: { audioMessage: audio } } } : { audioMessage: audio };
  const info: Baileys.proto.IWebMessageInfo = {
    key: { remoteJid: fields.remoteJid ?? '5511999990000@s.whatsapp.net', fromMe: false, id: fields.id },
    message: content,
    pushName: 'Ana',
  };
  if (!omit.has('messageTimestamp')) info.messageTimestamp = fields.messageTimestamp ?? 1718000000;
  return proto.WebMessageInfo.decode(proto.WebMessageInfo.encode(info).finish());
}

/**
 * A 32-byte key that is not `media`'s and with which its last AES block does not unpad, so the
 * decipher fails (a wrong key passes PKCS#7 by chance about once in 256 tries: those are skipped,
 * so the test is deterministic).
 */
export async function wrongMediaKey(media: PublishedMedia): Promise<Buffer> {
  const cipherText = media.encrypted.subarray(0, media.encrypted.length - 10);
  for (;;) {
    const key = randomBytes(32);
    const { cipherKey, iv } = await getMediaKeys(key, 'audio');
    const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
    try {
      decipher.update(cipherText);
      decipher.final();
    } catch {
      return key;
    }
  }
}
