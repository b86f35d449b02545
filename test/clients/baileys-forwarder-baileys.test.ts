/**
 * The Baileys forwarder driven by the real @whiskeysockets/baileys: voice notes encrypted with
 * Baileys' own media helpers, served by a local HTTPS stand-in of WhatsApp's CDN, described by
 * real protobuf messages, decrypted by Baileys' `downloadMediaMessage` and stored by a real
 * daemon (in-process) in its object store.
 */
import t, { type Test } from 'tap';
import { type BaileysForwarderOptions, createBaileysForwarder, type ForwardError, type ForwardResult } from '../../src/clients/baileys-forwarder.js';
import { startTestApp, TEST_API_KEY, type TestApp } from '../helpers/app.js';
import { longOpusVoiceNote, oggOpusFacts, opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { S3RVER_BUCKET, startS3rver } from '../helpers/storage-s3rver.js';
import { tempDir } from '../helpers/temp-dir.js';
import { CDN_HOST, downloadMediaMessage, voiceNoteMessage, type WAMessage, WhatsAppCdn, wrongMediaKey } from '../helpers/whatsapp-cdn.js';
import { eventsOfType, storedKeys, storedWav } from '../helpers/whatsapp-app.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * Every error that escaped to the process while this file ran: none may come from the forwarder,
 * Baileys, or the daemon that runs in this process too (uploads the forwarder cuts short, when a
 * download fails mid-body, are aborts the daemon must take without an uncaught error).
 */
const escaped: unknown[] = [];
const recordEscape = (err: unknown): void => {
  escaped.push(err);
};
process.on('uncaughtException', recordEscape);
process.on('unhandledRejection', recordEscape);
t.teardown(() => {
  process.off('uncaughtException', recordEscape);
  process.off('unhandledRejection', recordEscape);
});

const note = readFixture(await opusVoiceNote());
const longNote = readFixture(await longOpusVoiceNote(60));
const durationOf = (ogg: Buffer): number => {
  const f = oggOpusFacts(ogg);
  return Number(f.lastGranule - BigInt(f.preSkip)) / 48000;
};

const cdn = await WhatsAppCdn.start();
const daemon = await startTestApp();
t.teardown(async () => {
  await daemon.close();
  await cdn.close();
});

/** One request the forwarder made to the daemon, as fetch sent it and as the daemon answered. */
interface DaemonRequest {
  headers: Record<string, string>;
  status?: number;
  retryAfter?: string | null;
  answeredAt?: number;
  sentAt: number;
}

/** A forwarder on the real Baileys and the CDN stand-in, recording reactions and daemon requests. */
function forwarderFor(d: TestApp, overrides: Partial<BaileysForwarderOptions<WAMessage>> = {}) {
  const reactions: string[] = [];
  const requests: DaemonRequest[] = [];
  const forwarder = createBaileysForwarder<WAMessage>({
    endpoint: d.baseUrl,
    apiKey: TEST_API_KEY,
    instance: 'bot-1',
    downloadMediaMessage,
    downloadOptions: { options: cdn.axiosOptions },
    retryBaseDelayMs: 50,
    react: async (_jid, _key, emoji) => {
      reactions.push(emoji);
    },
    // the real fetch, watched: what went on the wire and what came back
    fetch: async (input, init) => {
      const entry: DaemonRequest = { headers: { ...(init?.headers as Record<string, string>) }, sentAt: Date.now() };
      requests.push(entry);
      const res = await fetch(input, init);
      entry.status = res.status;
      entry.retryAfter = res.headers.get('retry-after');
      entry.answeredAt = Date.now();
      return res;
    },
    ...overrides,
  });
  return { forwarder, reactions, requests };
}

let nextId = 0;
const messageId = (label: string): string => `3EB0${label.toUpperCase().replace(/[^A-Z0-9]/g, '')}${(++nextId).toString(16).padStart(4, '0')}`;

async function rejection(p: Promise<unknown>): Promise<ForwardError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err === undefined) throw new Error('expected the forward to fail');
  return err as ForwardError;
}

/** The stored WAV of an answer, checked against the note it came from. */
async function checkStored(t: Test, d: TestApp, result: ForwardResult, ogg: Buffer, id: string): Promise<void> {
  t.match(result.key, new RegExp(`^whatsapp/default/bot-1/\\d{4}/\\d{2}/\\d{2}/${id}\\.wav$`), 'key names tenant, instance and message id');
  const wav = await storedWav(d.app, result.key);
  t.equal(wav.sampleRate, 16000);
  t.equal(wav.channels, 1);
  t.ok(Math.abs(wav.durationSec - durationOf(ogg)) < 0.03, `stored WAV lasts the note's ${durationOf(ogg).toFixed(3)} s (got ${wav.durationSec.toFixed(3)} s)`);
  t.ok(Math.abs(result.durationSec - wav.durationSec) < 0.001, 'the answer tells the stored duration');
  const events = eventsOfType(d.dataDir, 'voicenote.stored').filter((e) => e['voicenote_id'] === result.id);
  t.equal(events.length, 1, 'one voicenote.stored event');
}

async function keysFor(d: TestApp, id: string): Promise<string[]> {
  return (await storedKeys(d.app)).filter((k) => k.includes(`/${id}.`));
}

t.test('voice notes are decrypted by Baileys, streamed to the daemon and stored; every fact on the wire', async (t) => {
  for (const [label, ogg, seconds] of [['short', note, 6], ['sixty', longNote, 60]] as const) {
    const media = await cdn.publish(ogg);
    const id = messageId(label);
    const { forwarder, reactions, requests } = forwarderFor(daemon);
    const result = await forwarder.forward(voiceNoteMessage(media, { id, seconds }));
    t.equal(result.created, true, `${label}: created on the first forward (201)`);
    t.equal(result.status, 'stored');
    await checkStored(t, daemon, result, ogg, id);
    t.same(reactions, ['⏳', '✅']);
    t.equal(cdn.hits(media.directPath), 1, 'downloaded once');
    t.equal(requests.length, 1);
    t.same(requests[0]?.headers, {
      'Content-Type': 'audio/ogg; codecs=opus',
      apikey: TEST_API_KEY,
      'X-Instance': 'bot-1',
      'X-Chat-Id': '5511999990000@s.whatsapp.net',
      'X-Message-Id': id,
      'Idempotency-Key': `bot-1:${id}`,
      'X-Audio-Seconds': String(seconds),
      'X-Audio-Ptt': 'true',
      'X-File-Length': String(ogg.length),
      'X-File-Sha256': media.fileSha256.toString('base64'),
      'X-Message-Timestamp': '1718000000',
    });
  }
  t.ok(cdn.lookups.length > 0 && cdn.lookups.every((h) => h === CDN_HOST), 'no host but the CDN was looked up');
  await waitFor(() => cdn.sockets.size === 0);
  t.pass('no CDN connection left open');
});

t.test('a voice note inside ephemeralMessage (disappearing messages) is found and stored', async (t) => {
  const media = await cdn.publish(note);
  const id = messageId('ephemeral');
  const { forwarder, requests } = forwarderFor(daemon);
  const result = await forwarder.forward(voiceNoteMessage(media, { id, ephemeral: true }));
  t.equal(result.created, true);
  await checkStored(t, daemon, result, note, id);
  t.equal(requests[0]?.headers['X-File-Length'], String(note.length), 'facts read from the wrapped audioMessage');
});

t.test('8 notes at once: 8 stored, each once', async (t) => {
  const notes = await Promise.all(Array.from({ length: 8 }, async (_, i) => ({ media: await cdn.publish(note), id: messageId(`burst${i}`) })));
  const { forwarder, reactions } = forwarderFor(daemon);
  const results = await Promise.all(notes.map(({ media, id }) => forwarder.forward(voiceNoteMessage(media, { id }))));
  t.same(results.map((r) => r.created), Array(8).fill(true));
  t.equal(new Set(results.map((r) => r.key)).size, 8, '8 distinct objects');
  for (const [i, r] of results.entries()) await checkStored(t, daemon, r, note, notes[i]!.id);
  t.equal(reactions.filter((e) => e === '✅').length, 8);
  t.ok(notes.every(({ media }) => cdn.hits(media.directPath) === 1));
});

t.test('a repeat is answered created: false with the first answer; nothing new is stored', async (t) => {
  const media = await cdn.publish(note);
  const id = messageId('repeat');
  const msg = voiceNoteMessage(media, { id });
  const { forwarder, reactions } = forwarderFor(daemon);
  const first = await forwarder.forward(msg);
  const again = await forwarder.forward(msg);
  const { created: c1, ...body1 } = first;
  const { created: c2, ...body2 } = again;
  t.equal(c1, true, 'first: created (201)');
  t.equal(c2, false, 'repeat: not created (200)');
  t.same(body2, body1, 'the same answer');
  t.same(await keysFor(daemon, id), [first.key], 'one object');
  t.equal(eventsOfType(daemon.dataDir, 'voicenote.stored').filter((e) => e['voicenote_id'] === first.id).length, 1, 'one event');
  t.same(reactions, ['⏳', '✅', '⏳', '✅']);
});

t.test('a wrong media key: MEDIA_DECRYPT_FAILED after one download, no error escapes, nothing stored', async (t) => {
  // 8 KiB: Baileys has deciphered the whole file (and failed) before anyone reads its stream.
  // The 60 s note fails only at its end, while its bytes are already on their way to the daemon.
  for (const [label, media, posts] of [['small', await cdn.publish(note.subarray(0, 8192)), 0], ['long', await cdn.publish(longNote), 1]] as const) {
    const id = messageId(`badkey${label}`);
    const { forwarder, reactions, requests } = forwarderFor(daemon);
    const err = await rejection(forwarder.forward(voiceNoteMessage(media, { id, mediaKey: await wrongMediaKey(media) })));
    t.match(err, { name: 'ForwardError', code: 'MEDIA_DECRYPT_FAILED', attempts: 1, retryable: false, status: undefined }, `${label}: ${err.message}`);
    t.equal(cdn.hits(media.directPath), 1, 'one download, no retry');
    t.equal(requests.length, posts, posts === 0 ? 'the daemon was never contacted' : 'one request, cut before its end');
    t.same(reactions, ['⏳', '❌']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.same(await keysFor(daemon, id), [], 'nothing stored');
  }
  t.same(escaped, [], 'no unhandled error event or rejection');
});

t.test('bytes that do not match the message\'s fileSha256: MEDIA_INTEGRITY_FAILED, the request never completes', async (t) => {
  const media = await cdn.publish(note);
  const other = await cdn.publish(longNote);
  const id = messageId('integrity');
  const { forwarder, requests } = forwarderFor(daemon);
  const err = await rejection(forwarder.forward(voiceNoteMessage({ ...media, fileSha256: other.fileSha256 }, { id })));
  t.match(err, { code: 'MEDIA_INTEGRITY_FAILED', attempts: 1, retryable: false });
  t.equal(requests.length, 1);
  t.equal(requests[0]?.status, undefined, 'no answer: the body was cut before its end');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same(await keysFor(daemon, id), [], 'nothing stored');
});

t.test('expired media (CDN 404/410): one re-upload request through ctx, one more download, stored', async (t) => {
  for (const status of [404, 410]) {
    const media = await cdn.publish(note);
    cdn.script(media.directPath, { status }, { status }, { status });
    const id = messageId(`expired${status}`);
    const before = cdn.reuploadRequests;
    const { forwarder, reactions } = forwarderFor(daemon, { ctx: { reuploadRequest: cdn.reuploadRequest } });
    const msg = voiceNoteMessage(media, { id });
    const result = await forwarder.forward(msg);
    t.equal(result.created, true, `${status}: stored after the re-upload`);
    await checkStored(t, daemon, result, note, id);
    t.equal(cdn.reuploadRequests - before, 1, 'one re-upload request');
    t.equal(cdn.hits(media.directPath), 1, 'the expired path was tried once');
    t.not(msg.message?.audioMessage?.directPath, media.directPath, 'the message now points at the new copy');
    t.equal(cdn.hits(msg.message!.audioMessage!.directPath!), 1, 'the new copy downloaded once');
    t.same(reactions, ['⏳', '✅']);
  }
});

t.test('expired media without ctx: MEDIA_EXPIRED at once, the daemon never contacted', async (t) => {
  const media = await cdn.publish(note);
  cdn.script(media.directPath, { status: 404 }, { status: 404 });
  const { forwarder, reactions, requests } = forwarderFor(daemon);
  const err = await rejection(forwarder.forward(voiceNoteMessage(media, { id: messageId('expirednoctx') })));
  t.match(err, { code: 'MEDIA_EXPIRED', attempts: 1, retryable: false });
  t.equal(cdn.hits(media.directPath), 1);
  t.equal(requests.length, 0);
  t.same(reactions, ['⏳', '❌']);
});

t.test('expired media whose re-upload fails or is gone too: MEDIA_EXPIRED, one re-upload request', async (t) => {
  const gone = await cdn.publish(note);
  cdn.script(gone.directPath, { status: 410 });
  let asked = 0;
  const again = forwarderFor(daemon, {
    ctx: {
      reuploadRequest: async (m) => {
        asked++;
        const moved = await cdn.reuploadRequest(m);
        cdn.script(moved.message!.audioMessage!.directPath!, { status: 410 }, { status: 410 });
        return moved;
      },
    },
  });
  const err1 = await rejection(again.forwarder.forward(voiceNoteMessage(gone, { id: messageId('regone') })));
  t.match(err1, { code: 'MEDIA_EXPIRED', attempts: 2, retryable: false });
  t.equal(asked, 1, 'asked once');
  t.equal(again.requests.length, 0);

  const refused = await cdn.publish(note);
  cdn.script(refused.directPath, { status: 404 });
  const phoneOffline = forwarderFor(daemon, {
    ctx: {
      reuploadRequest: async () => {
        throw new Error('Media re-upload failed by device (NOT_FOUND)');
      },
    },
  });
  const err2 = await rejection(phoneOffline.forwarder.forward(voiceNoteMessage(refused, { id: messageId('refused') })));
  t.match(err2, { code: 'MEDIA_EXPIRED', attempts: 1, message: /re-upload request failed: Media re-upload failed by device/ });
  t.same(phoneOffline.reactions, ['⏳', '❌']);
});

t.test('other CDN answers: 403 is final (MEDIA_REJECTED), 500 is retried', async (t) => {
  const forbidden = await cdn.publish(note);
  cdn.script(forbidden.directPath, { status: 403 });
  const { forwarder } = forwarderFor(daemon);
  const err = await rejection(forwarder.forward(voiceNoteMessage(forbidden, { id: messageId('forbidden') })));
  t.match(err, { code: 'MEDIA_REJECTED', attempts: 1, retryable: false });
  t.equal(cdn.hits(forbidden.directPath), 1);

  const flaky = await cdn.publish(note);
  cdn.script(flaky.directPath, { status: 500 }, { status: 502 });
  const id = messageId('cdn5xx');
  const result = await forwarder.forward(voiceNoteMessage(flaky, { id }));
  t.equal(result.created, true);
  t.equal(cdn.hits(flaky.directPath), 3, 'two failures, then the download');
  await checkStored(t, daemon, result, note, id);
});

t.test('the CDN drops the connection mid-file: the stalled download times out and is retried; stored once', async (t) => {
  const media = await cdn.publish(longNote);
  cdn.script(media.directPath, { dropAfter: 16_384 });
  const id = messageId('drop');
  const { forwarder, requests } = forwarderFor(daemon, { downloadIdleTimeoutMs: 1000 });
  const result = await forwarder.forward(voiceNoteMessage(media, { id, seconds: 60 }));
  t.equal(result.created, true, 'created by the retry');
  t.equal(cdn.hits(media.directPath), 2, 'downloaded twice');
  t.equal(requests.length, 2, 'the first request was cut, the second stored');
  t.same(await keysFor(daemon, id), [result.key], 'one object');
  await checkStored(t, daemon, result, longNote, id);
});

t.test('a CDN that goes quiet or trickles: idle and total deadlines end the download and close its connection', async (t) => {
  const stalled = await cdn.publish(longNote);
  cdn.script(stalled.directPath, { stallAfter: 16_384 });
  const slow = await cdn.publish(note);
  cdn.script(slow.directPath, { trickle: { bytes: 1024, everyMs: 200 } });
  const { forwarder } = forwarderFor(daemon, { downloadIdleTimeoutMs: 1000, downloadTimeoutMs: 2000 });
  for (const [label, media, ogg, seconds] of [['quiet', stalled, longNote, 60], ['trickle', slow, note, 6]] as const) {
    const id = messageId(label);
    const result = await forwarder.forward(voiceNoteMessage(media, { id, seconds }));
    t.equal(result.created, true, `${label}: stored by the retry`);
    t.equal(cdn.hits(media.directPath), 2);
    await checkStored(t, daemon, result, ogg, id);
  }
  await waitFor(() => cdn.sockets.size === 0);
  t.pass('the stalled and trickling connections were closed by the forwarder');

  const never = await cdn.publish(note);
  cdn.script(never.directPath, { stallAfter: 0 }, { stallAfter: 0 });
  const bounded = forwarderFor(daemon, { downloadIdleTimeoutMs: 300, maxRetries: 1 });
  const err = await rejection(bounded.forwarder.forward(voiceNoteMessage(never, { id: messageId('never') })));
  t.match(err, { code: 'MEDIA_TIMEOUT', attempts: 2, retryable: true });
  t.equal(bounded.requests.length, 0, 'no byte ever came: the daemon was never contacted');
});

t.test('absent fields are not sent (nor zeros), and the daemon decides from the bytes', async (t) => {
  const cases = [
    { label: 'absent', fields: { omit: ['seconds', 'fileLength', 'messageTimestamp', 'ptt', 'fileSha256', 'mimetype'] as const } },
    { label: 'zero', fields: { seconds: 0, messageTimestamp: 0, omit: ['fileSha256'] as const } },
  ];
  for (const { label, fields } of cases) {
    const media = await cdn.publish(note);
    const id = messageId(label);
    const msg = voiceNoteMessage(media, { id, ...fields, omit: [...fields.omit] });
    if (label === 'absent') {
      const audio = msg.message!.audioMessage!;
      t.same([audio.seconds, String(audio.fileLength), String(msg.messageTimestamp), audio.ptt], [0, '0', '0', false], 'the decoded protobuf reads defaults for absent fields');
    }
    const { forwarder, requests } = forwarderFor(daemon);
    const result = await forwarder.forward(msg);
    t.equal(result.created, true, `${label}: stored`);
    const sent = requests[0]!.headers;
    for (const h of ['X-Audio-Seconds', 'X-Message-Timestamp', 'X-File-Sha256']) t.notOk(h in sent, `${label}: no ${h}`);
    if (label === 'absent') {
      t.notOk('X-File-Length' in sent, 'no X-File-Length');
      t.notOk('X-Audio-Ptt' in sent, 'no X-Audio-Ptt');
      t.equal(sent['Content-Type'], 'application/octet-stream', 'no mimetype: the daemon sniffs the bytes');
    }
    await checkStored(t, daemon, result, note, id);
  }
});

t.test('daemon 429 with Retry-After (its real token bucket): waited out, then stored', async (t) => {
  // one token, one more every 3 s: of two notes sent together, one waits
  const limited = await startTestApp({ rateLimit: { instance: { capacity: 1, refillPerMinute: 20 } } });
  t.teardown(() => limited.close());
  const { forwarder, requests } = forwarderFor(limited);
  const notes = [{ media: await cdn.publish(note), id: messageId('bucketa') }, { media: await cdn.publish(note), id: messageId('bucketb') }];
  const results = await Promise.all(notes.map(({ media, id }) => forwarder.forward(voiceNoteMessage(media, { id }))));
  t.same(results.map((r) => r.created), [true, true], 'both stored');
  t.same(requests.map((r) => r.status).sort(), [201, 201, 429], 'one refusal on the way');
  const refusal = requests.find((r) => r.status === 429)!;
  const retry = requests.find((r) => r.status === 201 && r.headers['X-Message-Id'] === refusal.headers['X-Message-Id'])!;
  const waitSec = Number(refusal.retryAfter);
  t.ok(waitSec >= 1, `Retry-After: ${refusal.retryAfter}`);
  t.ok(retry.sentAt - refusal.answeredAt! >= waitSec * 1000 - 20, `the retry came after Retry-After (${retry.sentAt - refusal.answeredAt!} ms)`);
  const waited = notes.find(({ id }) => id === refusal.headers['X-Message-Id'])!;
  t.equal(cdn.hits(waited.media.directPath), 2, 'the media is downloaded again for the retry');
  for (const [i, r] of results.entries()) await checkStored(t, limited, r, note, notes[i]!.id);
});

t.test('daemon 503 with Retry-After (its object store down): waited out, then stored', async (t) => {
  const dir = await tempDir(t, 'aid-fwd-s3-');
  let s3 = await startS3rver(dir);
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  const onS3 = await startTestApp({ storage: { driver: 's3', s3: { endpoint: s3.endpoint, bucket: S3RVER_BUCKET, forcePathStyle: true } } });
  t.teardown(async () => {
    await onS3.close();
    await s3.close();
  });
  const port = s3.port;
  await s3.close();
  const media = await cdn.publish(note);
  const id = messageId('storedown');
  let restarted: Promise<void> | undefined;
  const { forwarder, requests } = forwarderFor(onS3, {
    fetch: async (input, init) => {
      const entry: DaemonRequest = { headers: { ...(init?.headers as Record<string, string>) }, sentAt: Date.now() };
      requests.push(entry);
      const res = await fetch(input, init);
      Object.assign(entry, { status: res.status, retryAfter: res.headers.get('retry-after'), answeredAt: Date.now() });
      // the store comes back right after the daemon said it was away
      if (res.status === 503) restarted ??= startS3rver(dir, port).then((s) => void (s3 = s));
      return res;
    },
  });
  const result = await forwarder.forward(voiceNoteMessage(media, { id }));
  t.equal(result.created, true);
  const statuses = requests.map((r) => r.status);
  t.equal(statuses[0], 503, 'first answer: 503');
  t.equal(statuses.at(-1), 201, 'last answer: stored');
  const refusal = requests[0]!;
  t.ok(Number(refusal.retryAfter) >= 1, `Retry-After: ${refusal.retryAfter}`);
  const waitedMs = requests[1]!.sentAt - refusal.answeredAt!;
  t.ok(waitedMs >= Number(refusal.retryAfter) * 1000 - 20, `the retry came after Retry-After (${waitedMs} ms; answers ${statuses.join(', ')})`);
  t.match(result.key, new RegExp(`/${id}\\.wav$`));
  const wav = await storedWav(onS3.app, result.key);
  t.ok(Math.abs(wav.durationSec - durationOf(note)) < 0.03, 'the WAV is in S3');
});

t.test('no error escaped from the forwarder, Baileys or the daemon in this file', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(escaped.map((e) => String((e as Error)?.stack ?? e)), []);
});
