import t from 'tap';
import { parseEvolutionUpsert } from '../../src/voicenotes/evolution-envelope.js';
import { upsertEnvelope } from '../helpers/whatsapp-envelope.js';

t.test('reads the audio facts in their various serializations', async (t) => {
  const media = Buffer.from('OggS-and-some-bytes');
  const env = upsertEnvelope(media, { id: 'X1', seconds: 9 });
  const data = env['data'] as { message: Record<string, unknown>; messageTimestamp: unknown };
  const audio = data.message['audioMessage'] as Record<string, unknown>;
  audio['fileSha256'] = { type: 'Buffer', data: [...Buffer.alloc(32, 7)] };
  audio['fileLength'] = { low: media.length, high: 0, unsigned: true };
  data.messageTimestamp = '1700000000';
  data.message = { ephemeralMessage: { message: { audioMessage: audio } }, base64: `data:audio/ogg;base64,${media.toString('base64')}` };
  const p = parseEvolutionUpsert(env, 1000);
  if (p.kind !== 'audio') throw new Error('expected audio');
  t.ok(p.media.equals(media));
  t.same(p.declared, { seconds: 9, ptt: true, fileLength: media.length, sha256Base64: Buffer.alloc(32, 7).toString('base64'), mimetype: 'audio/ogg; codecs=opus', messageTimestamp: new Date(1700000000 * 1000) });
  t.match(parseEvolutionUpsert({ ...env, event: 'send.message' }, 1000), { kind: 'ignored' });
  t.throws(() => parseEvolutionUpsert(upsertEnvelope(Buffer.alloc(2000)), 1000), { code: 'PAYLOAD_TOO_LARGE' });
  t.throws(() => parseEvolutionUpsert({ event: 'messages.upsert', instance: 'i', data: { key: {} } }, 1000), { code: 'MISSING_PARAMETER' });
});
