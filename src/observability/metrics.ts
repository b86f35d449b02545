import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CountingHistogram } from './counting-histogram.js';

/**
 * Drop reasons known up front. Their series exist at 0 from the start, so the first drop is an
 * increase that `increase()` and the alert rules see (a series born at 1 shows none).
 */
const DROP_REASONS = ['invalid', 'spool_slow', 'spool_full', 'chunk_queue_full', 'chunk_store_failed', 'dispatch_queue_full'] as const;

/**
 * Every metric the daemon exports, created once per process (or per test app) on its own
 * registry. Labels are bounded: codes from errors.ts, sources, formats, drivers, outcomes —
 * never room, track, message or recording ids.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly buildInfo = new Gauge({
    name: 'audio_ingestd_build_info',
    help: 'Build information; value is always 1. ffmpeg: the decoder version; ffmpeg_source: env (FFMPEG_PATH), system (PATH) or bundled (static build)',
    labelNames: ['version', 'node', 'uws_native', 'ffmpeg', 'ffmpeg_source'] as const,
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'audio_ingestd_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'audio_ingestd_errors_total',
    help: 'Errors answered or logged, by stable error code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly unhandled = new Counter({
    name: 'audio_ingestd_unhandled_errors_total',
    help: 'Unhandled rejections and uncaught exceptions, by the route of the request they came from (none outside requests)',
    labelNames: ['kind', 'route'] as const,
    registers: [this.registry],
  });

  // live streams
  readonly streamsActive = new Gauge({
    name: 'audio_ingestd_streams_active',
    help: 'Live streams currently open',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly streamsTotal = new Counter({
    name: 'audio_ingestd_streams_total',
    help: 'Live streams ended, by end reason',
    labelNames: ['source', 'end_reason'] as const,
    registers: [this.registry],
  });
  readonly framesReceived = new Counter({
    name: 'audio_ingestd_frames_received_total',
    help: 'Binary audio frames received',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: 'audio_ingestd_audio_bytes_received_total',
    help: 'Raw audio bytes received',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly audioSeconds = new Counter({
    name: 'audio_ingestd_audio_seconds_total',
    help: 'Seconds of audio written to recordings and voice notes',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly framesDropped = new Counter({
    name: 'audio_ingestd_frames_dropped_total',
    help: 'Audio dropped, by reason (e.g. spool_full, invalid)',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  readonly textFrames = new Counter({
    name: 'audio_ingestd_text_frames_total',
    help: 'WebSocket text frames, by kind (mute, unmute, invalid)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly chunksWritten = new Counter({
    name: 'audio_ingestd_chunks_total',
    help: 'Chunks cut from live streams',
    registers: [this.registry],
  });
  readonly chunkLatency = new Histogram({
    name: 'audio_ingestd_chunk_store_latency_seconds',
    help: 'From a chunk\'s last frame to its bytes being stored',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly chunkDispatchLatency = new Histogram({
    name: 'audio_ingestd_chunk_dispatch_latency_seconds',
    help: 'From a chunk\'s last frame to the analysis endpoint\'s 2xx answer to it',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  // live audio out (GET /v1/live)
  readonly liveSubscribers = new Gauge({
    name: 'audio_ingestd_live_subscribers',
    help: 'Open live audio subscriptions (GET /v1/live)',
    registers: [this.registry],
  });
  readonly liveBytesSent = new Counter({
    name: 'audio_ingestd_live_bytes_sent_total',
    help: 'Bytes of live audio messages handed to subscribers\' sockets (headers included)',
    registers: [this.registry],
  });
  readonly liveOverflows = new Counter({
    name: 'audio_ingestd_live_overflows_total',
    help: 'Subscribers closed with 4008 because their queue of live audio was full',
    registers: [this.registry],
  });
  /** Observed per message sent: a {@link CountingHistogram} (no allocation per observation). */
  readonly liveDeliveryLatency = new CountingHistogram({
    name: 'audio_ingestd_live_delivery_latency_seconds',
    help: 'From a live frame\'s arrival to its audio being handed to a subscriber\'s socket (live edge only)',
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05, 0.06, 0.07, 0.08, 0.1, 0.25],
    registers: [this.registry],
  });

  // voice notes
  readonly voiceNotes = new Counter({
    name: 'audio_ingestd_voicenotes_total',
    help: 'Voice notes processed, by outcome and format',
    labelNames: ['outcome', 'format'] as const,
    registers: [this.registry],
  });
  readonly voiceNoteAnswer = new Histogram({
    name: 'audio_ingestd_voicenote_answer_seconds',
    help: 'From a voice note\'s request to its answer (body upload, decode, store, event), by outcome (stored, duplicate, error)',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly decodeSeconds = new Histogram({
    name: 'audio_ingestd_decode_seconds',
    help: 'Time to decode a voice note, by decoder',
    labelNames: ['decoder'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly ffmpegActive = new Gauge({
    name: 'audio_ingestd_ffmpeg_processes',
    help: 'ffmpeg child processes running',
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'audio_ingestd_rate_limited_total',
    help: 'Requests refused by a token bucket, by scope',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });

  // storage
  readonly storeOps = new Counter({
    name: 'audio_ingestd_store_operations_total',
    help: 'Object store operations, by driver, operation and outcome',
    labelNames: ['driver', 'op', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly storeBytes = new Counter({
    name: 'audio_ingestd_store_bytes_total',
    help: 'Bytes written to the object store',
    labelNames: ['driver'] as const,
    registers: [this.registry],
  });
  readonly spoolBytes = new Gauge({
    name: 'audio_ingestd_spool_bytes',
    help: 'Bytes waiting in the local spool',
    registers: [this.registry],
  });
  readonly spoolMaxBytes = new Gauge({
    name: 'audio_ingestd_spool_max_bytes',
    help: 'Byte budget of the local spool (spool.maxBytes); drops start when spool_bytes reaches it',
    registers: [this.registry],
  });
  readonly storeLatency = new Histogram({
    name: 'audio_ingestd_store_operation_seconds',
    help: 'Duration of object store operations, by driver and operation (any outcome)',
    labelNames: ['driver', 'op'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  /** Reports the finalize queue at scrape time; set by the recording service. */
  finalizeQueueSource: (() => { running: number; waiting: number }) | undefined;
  readonly finalizeQueue = new Gauge({
    name: 'audio_ingestd_finalize_queue',
    help: 'Master finalizations by state: running (at most storage.finalizeConcurrency) or waiting for a slot',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => {
      const q = this.finalizeQueueSource?.();
      this.finalizeQueue.set({ state: 'running' }, q?.running ?? 0);
      this.finalizeQueue.set({ state: 'waiting' }, q?.waiting ?? 0);
    },
  });
  readonly finalizeWait = new Histogram({
    name: 'audio_ingestd_finalize_wait_seconds',
    help: 'From a recording\'s end to the start of its finalization (time waiting for a slot)',
    buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly finalizeDuration = new Histogram({
    name: 'audio_ingestd_finalize_seconds',
    help: 'From the start of a master\'s finalization to its completed object (last parts, header, completion), any outcome',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  // events
  readonly outboxPending = new Gauge({
    name: 'audio_ingestd_outbox_pending',
    help: 'Events written to the outbox and not yet confirmed, by sink',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  });
  readonly eventsDelivered = new Counter({
    name: 'audio_ingestd_events_delivered_total',
    help: 'Events confirmed by a sink',
    labelNames: ['sink', 'type'] as const,
    registers: [this.registry],
  });
  readonly deliveryRetries = new Counter({
    name: 'audio_ingestd_delivery_retries_total',
    help: 'Delivery attempts that failed and will be retried',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  });
  readonly eventDelivery = new Histogram({
    name: 'audio_ingestd_event_delivery_seconds',
    help: 'From an event\'s occurredAt (when it was written) to its confirmation by a sink',
    labelNames: ['sink'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  /** Reports each sink's lag at scrape time; set by the outbox when it starts. */
  outboxLagSource: (() => Iterable<readonly [sink: string, seconds: number]>) | undefined;
  readonly outboxLag = new Gauge({
    name: 'audio_ingestd_outbox_lag_seconds',
    help: 'Age of the oldest event a sink has not confirmed yet (0 when it is caught up), by sink',
    labelNames: ['sink'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [sink, seconds] of this.outboxLagSource?.() ?? []) this.outboxLag.set({ sink }, seconds);
    },
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    for (const reason of DROP_REASONS) this.framesDropped.inc({ source: 'livekit', reason }, 0);
    // Live counters are folded in once a second; their series exist from the start, so rate() sees the first second.
    this.framesReceived.inc({ source: 'livekit' }, 0);
    this.bytesReceived.inc({ source: 'livekit' }, 0);
    if (options.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: 'audio_ingestd_' });
    }
  }
}
