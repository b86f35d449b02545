import { createHash } from 'node:crypto';

/** An Evolution API `messages.upsert` envelope carrying `media` as "webhook base64" does. */
export function upsertEnvelope(media: Buffer, opts: { instance?: string; id?: string; seconds?: number; base64?: boolean; message?: Record<string, unknown> } = {}): Record<string, unknown> {
  const instance = opts.instance ?? 'evo-1';
  return {
    event: 'messages.upsert',
    instance,
    data: {
      key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: opts.id ?? `3EB0${Math.random().toString(16).slice(2, 14).toUpperCase()}` },
      pushName: 'Maria',
      message: opts.message ?? {
        audioMessage: {
          mimetype: 'audio/ogg; codecs=opus',
          seconds: opts.seconds ?? 7,
          ptt: true,
          fileLength: String(media.length),
          fileSha256: createHash('sha256').update(media).digest('base64'),
        },
        ...(opts.base64 === false ? {} : { base64: media.toString('base64') }),
      },
      messageType: 'audioMessage',
      messageTimestamp: 1700000000,
    },
    destination: 'http://example.invalid/webhook',
    date_time: '2023-11-14T22:13:20.000Z',
    sender: '5511900000000@s.whatsapp.net',
    server_url: 'http://evolution.invalid',
    apikey: 'evolution-instance-token',
  };
}
