// Dequeuer metrics. ProxyMQ's names are kept; the rest describe each hop and
// each way a message can end (acked, requeued, retried, dead-lettered,
// dropped), by a reason from a fixed set.
import client from 'prom-client'
import { FastCounter, FastHistogram } from './fast'
import { children1, children2, latencyBuckets, noop, type Registry } from './registry'

export interface DequeuerGauges {
  inflight: () => number
  prefetch: () => number
  consuming: () => boolean
  consumeUp: () => boolean
  publishUp: () => boolean
}

export type BreakerGaugeState = 'closed' | 'half_open' | 'open'

export type DequeuerMetrics = ReturnType<typeof realDequeuerMetrics>

export function createDequeuerMetrics (registry: Registry | null, service: string, maxSeconds: number, gauges: DequeuerGauges): DequeuerMetrics {
  if (registry === null) return noop(realDequeuerMetrics(new client.Registry(), service, maxSeconds, gauges))
  return realDequeuerMetrics(registry, service, maxSeconds, gauges)
}

function realDequeuerMetrics (registry: Registry, service: string, maxSeconds: number, gauges: DequeuerGauges) {
  const registers = [registry]
  const buckets = latencyBuckets(maxSeconds)
  const counter = (name: string, help: string, labelNames: string[]) => new FastCounter(registry, name, help, ['service', ...labelNames])
  const histogram = (name: string, help: string, labelNames: string[] = []) => new FastHistogram(registry, name, help, ['service', ...labelNames], buckets)
  // Every series carries the (fixed) service label first.
  const by = <C>(m: { labels: (...v: string[]) => C }): ((x: string) => C) => {
    const c = children2(m)
    return (x) => c(service, x)
  }
  const gauge = (name: string, help: string, collect: () => number, aggregator: client.Aggregator = 'sum') =>
    new client.Gauge({ name, help, labelNames: ['service'], registers, aggregator, collect () { this.set({ service }, collect()) } })

  const processed = by(counter('dequeuer_processed_total', 'Messages the service answered, by status code.', ['status_code']))
  const failed = by(counter('dequeuer_failed_total', 'Messages that got no answer from the service on an attempt, by reason.', ['reason']))
  const processing = histogram('dequeuer_processing_latency_seconds', 'Time from delivery to reply published.').labels(service)
  const queueLatency = histogram('dequeuer_queue_latency_seconds', 'Time a message waited in the queue (from its timestamp, 1 s resolution).').labels(service)
  const downstream = histogram('dequeuer_downstream_latency_seconds', 'Time of the HTTP call to the service.').labels(service)
  const acks = counter('dequeuer_acks_total', 'Messages acknowledged to the broker.', []).labels(service)
  const requeues = by(counter('dequeuer_requeues_total', 'Messages returned to the queue, by reason; all but publish_failed without counting an attempt.', ['reason']))
  const publishRetries = counter('dequeuer_publish_retries_total', 'Publishes a message\'s outcome needed (a reply, a copy) that failed and were tried again, the message held meanwhile.', []).labels(service)
  const retries = by(counter('dequeuer_retries_total', 'Messages scheduled for a delayed retry, by reason.', ['reason']))
  const deadLetters = by(counter('dequeuer_dead_letters_total', 'Messages dead-lettered, by reason.', ['reason']))
  const dropped = by(counter('dequeuer_dropped_total', 'Messages dropped (expired with DEQUEUER_EXPIRED=drop), by reason.', ['reason']))
  const outcomes = by(counter('dequeuer_outcomes_total', 'How each message ended: reply, error_reply, retry, dead_letter, requeue, recount, drop, or returned (could not be completed).', ['outcome']))
  const lostAttempts = counter('dequeuer_redeliveries_total', 'Redelivered messages: an earlier delivery ended without an ack (crash, lost channel).', []).labels(service)
  const breakerState = new client.Gauge({ name: 'dequeuer_circuit_breaker_state', help: 'Breaker state: 0 closed, 1 half-open, 2 open.', labelNames: ['service'], registers, aggregator: 'max' })
  const breakerTransitions = by(counter('dequeuer_circuit_breaker_transitions_total', 'Breaker transitions, by the state entered.', ['state']))
  const healthAttempts = counter('dequeuer_health_check_attempts_total', 'Health checks made.', []).labels(service)
  const healthSuccess = counter('dequeuer_health_check_success_total', 'Health checks that passed.', []).labels(service)
  const healthDuration = by(histogram('dequeuer_health_check_duration_seconds', 'Health check latency, by status code (or "error").', ['status_code']))
  const readyTime = new client.Gauge({ name: 'dequeuer_ready_time_seconds', help: 'Unix time the dequeuer became ready (first consuming).', labelNames: ['service'], registers, aggregator: 'max' })
  const dlqDepth = new client.Gauge({ name: 'dequeuer_dead_letter_queue_messages', help: 'Messages in the service\'s dead-letter queue (polled).', labelNames: ['service'], registers, aggregator: 'max' })
  const reconnects = children1(new FastCounter(registry, 'relayq_broker_reconnects_total', 'Broker connections re-established after a loss.', ['connection']))
  const batchSize = new FastHistogram(registry, 'dequeuer_batch_size', 'Messages per batch call (batch mode).', ['service'], [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]).labels(service)
  const streams = by(counter('dequeuer_streams_total', 'Responses streamed to an enqueuer, by how they ended: complete, service_error, cancelled (client gone), credit_timeout, broker_lost.', ['result']))
  const streamsStarted = counter('dequeuer_streams_started_total', 'Responses the dequeuer began to stream.', []).labels(service)
  const streamChunks = counter('dequeuer_stream_chunks_total', 'Body messages of streamed responses published.', []).labels(service)
  const streamBytes = counter('dequeuer_stream_bytes_total', 'Body bytes of streamed responses published.', []).labels(service)
  breakerState.set({ service }, 0)
  gauge('dequeuer_inflight_messages', 'Messages being processed now.', gauges.inflight)
  gauge('dequeuer_prefetch', 'The prefetch now in force (DEQUEUER_CONCURRENCY, or 1 while careful or probing).', gauges.prefetch, 'max')
  gauge('dequeuer_consuming', 'Whether the dequeuer is consuming: 1 yes, 0 paused (breaker, health, drain, broker).', () => (gauges.consuming() ? 1 : 0), 'min')
  new client.Gauge({
    name: 'relayq_broker_connected',
    help: 'Broker connection state: 1 connected, 0 not.',
    labelNames: ['connection'],
    registers,
    aggregator: 'min',
    collect () {
      this.set({ connection: 'consume' }, gauges.consumeUp() ? 1 : 0)
      this.set({ connection: 'publish' }, gauges.publishUp() ? 1 : 0)
    },
  })

  return {
    processed (status: number): void { processed(String(status)).inc() },
    failed (reason: string): void { failed(reason).inc() },
    processing (seconds: number): void { processing.observe(seconds) },
    queueLatency (seconds: number): void { queueLatency.observe(seconds) },
    downstream (seconds: number): void { downstream.observe(seconds) },
    acked (): void { acks.inc() },
    requeued (reason: string): void { requeues(reason).inc() },
    publishRetried (): void { publishRetries.inc() },
    retried (reason: string): void { retries(reason).inc() },
    deadLettered (reason: string): void { deadLetters(reason).inc() },
    dropped (reason: string): void { dropped(reason).inc() },
    redelivered (): void { lostAttempts.inc() },
    outcome (kind: string): void { outcomes(kind).inc() },
    breaker (state: BreakerGaugeState): void {
      breakerState.set({ service }, state === 'closed' ? 0 : state === 'half_open' ? 1 : 2)
      breakerTransitions(state).inc()
    },
    healthCheck (seconds: number, status: number | 'error', ok: boolean): void {
      healthAttempts.inc()
      if (ok) healthSuccess.inc()
      healthDuration(String(status)).observe(seconds)
    },
    ready (unixSeconds: number): void { readyTime.set({ service }, unixSeconds) },
    dlqDepth (messages: number): void { dlqDepth.set({ service }, messages) },
    reconnected (connection: string): void { reconnects(connection).inc() },
    batch (size: number): void { batchSize.observe(size) },
    streamStarted (): void { streamsStarted.inc() },
    streamChunk (bytes: number): void {
      streamChunks.inc()
      streamBytes.inc(bytes)
    },
    streamEnded (result: string): void { streams(result).inc() },
  }
}
