import type { PcmFormat } from '../audio/pcm-format.js';
import { WAV_HEADER_BYTES } from '../audio/wav.js';
import type { ChunkDispatcher } from '../dispatch/chunk-dispatch.js';
import type { Metrics } from '../observability/metrics.js';
import type { ChunkSink, RecordingIdentity } from './recording.js';

/**
 * Hands every chunk of a live recording to the analysis endpoint (best effort: the dispatcher's
 * queue is bounded and never blocks the recording). `l16` is sent big-endian, as the
 * audio/L16 media type (RFC 3551) requires.
 */
export class ChunkDispatchSink implements ChunkSink {
  constructor(
    private readonly dispatcher: ChunkDispatcher,
    private readonly format: 'wav' | 'l16',
    private readonly metrics: Metrics,
  ) {}

  chunk(identity: RecordingIdentity, _seq: number, wav: Buffer, pcmFormat: PcmFormat, _startFrame: number, _frames: number, release: () => void): void {
    const bytes = this.format === 'wav' ? wav : Buffer.from(wav.subarray(WAV_HEADER_BYTES)).swap16();
    if (bytes !== wav) release(); // l16 sends its own copy
    const queued = this.dispatcher.enqueue({
      meetingId: identity.meetingId ?? identity.roomName,
      participantId: identity.participant ?? '',
      trackId: identity.trackId ?? '',
      bytes,
      format: this.format,
      sampleRate: pcmFormat.sampleRate,
      channels: pcmFormat.channels,
      cutAt: Date.now(),
      ...(bytes === wav ? { release } : {}),
    });
    if (!queued) this.metrics.framesDropped.inc({ source: identity.source, reason: 'dispatch_queue_full' });
  }
}
