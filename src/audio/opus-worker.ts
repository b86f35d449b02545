/**
 * Worker-thread side of {@link OpusWorkerPool}: runs {@link decodeOggOpus} for any number of
 * concurrent jobs, each fed by the chunks its request's body brings.
 */
import { Readable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import { AppError } from '../errors.js';
import { decodeOggOpus } from './decode-opus.js';
import type { WorkerReply, WorkerRequest } from './opus-worker-protocol.js';

const port = parentPort;
if (port === null) throw new Error('opus-worker runs only as a worker thread');

const jobs = new Map<number, Readable>();
let stopping = false;

function reply(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  if (!stopping) port!.postMessage(msg, transfer);
}

port.on('message', (msg: WorkerRequest) => {
  switch (msg.type) {
    case 'stop': {
      // Runs between two JavaScript tasks, so libopus is not on the stack: every decode is
      // failed at its next read, the port closes, and the thread exits when its loop is empty.
      stopping = true;
      for (const input of jobs.values()) input.destroy(new AppError('DRAINING', 'decoder stopped'));
      jobs.clear();
      port.close();
      return;
    }
    case 'start': {
      // fed by 'data' messages; the decoder pulls at its own pace from what arrived
      const input = new Readable({ read() {} });
      jobs.set(msg.id, input);
      decodeOggOpus(input, { output: msg.output, head: Buffer.from(msg.head), maxOutputBytes: msg.maxOutputBytes }).then(
        (r) => {
          // hand the PCM over without a copy when it owns its whole ArrayBuffer
          const whole = r.pcm.byteOffset === 0 && r.pcm.byteLength === r.pcm.buffer.byteLength;
          const pcm = whole ? (r.pcm.buffer as ArrayBuffer) : r.pcm.buffer.slice(r.pcm.byteOffset, r.pcm.byteOffset + r.pcm.byteLength) as ArrayBuffer;
          jobs.delete(msg.id);
          reply({ type: 'done', id: msg.id, pcm, frames: r.frames, preSkip: r.preSkip, inputRate: r.inputRate, streamChannels: r.streamChannels }, [pcm]);
        },
        (err: unknown) => {
          jobs.delete(msg.id);
          input.destroy();
          const e = err instanceof AppError ? err : new AppError('CORRUPT_AUDIO', 'audio could not be decoded', { cause: err });
          reply({ type: 'error', id: msg.id, code: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) });
        },
      );
      return;
    }
    case 'data':
      jobs.get(msg.id)?.push(Buffer.from(msg.chunk));
      return;
    case 'end':
      jobs.get(msg.id)?.push(null);
      return;
    case 'abort': {
      const input = jobs.get(msg.id);
      jobs.delete(msg.id);
      // the decode then fails; its answer is dropped by the pool, which already gave up on it
      input?.destroy(new AppError('CLIENT_ABORTED', 'decode abandoned'));
      return;
    }
  }
});
