// Enqueuer metrics. ProxyMQ's names are kept so existing dashboards keep
// working; the rest follow Prometheus naming. `service` is always a bounded
// value: a configured or existing service, `_unknown` or `_invalid`.
import client from 'prom-client'
import { ERROR_CODES } from '../errors'
import { FastCounter, FastHistogram } from './fast'
import { children1, children2, latencyBuckets, noop, type Registry } from './registry'

export interface EnqueuerGauges {
  inflight: () => number
  pendingReplies: () => number
  brokerUp: () => boolean
  brokerBlocked: () => boolean
  bufferedBytes?: () => number
  /** Requests waiting for their service's first consumer, by service (ENQUEUER_NO_CONSUMERS=wait). */
  waitingForConsumer?: () => ReadonlyMap<string, number>
}

export type EnqueuerMetrics = ReturnType<typeof realEnqueuerMetrics>

export function createEnqueuerMetrics (registry: Registry | null, replyTimeoutSeconds: number, gauges: EnqueuerGauges): EnqueuerMetrics {
  if (registry === null) return noop(realEnqueuerMetrics(new client.Registry(), replyTimeoutSeconds, gauges))
  return realEnqueuerMetrics(registry, replyTimeoutSeconds, gauges)
}

function realEnqueuerMetrics (registry: Registry, replyTimeoutSeconds: number, gauges: EnqueuerGauges) {
  const registers = [registry]
  const buckets = latencyBuckets(replyTimeoutSeconds)
  const counter = (name: string, help: string, labelNames: string[]) => new FastCounter(registry, name, help, labelNames)
  const histogram = (name: string, help: string) => new FastHistogram(registry, name, help, ['service'], buckets)
  const gauge = (name: string, help: string, collect: () => number, aggregator: client.Aggregator = 'sum') =>
    new client.Gauge({ name, help, registers, aggregator, collect () { this.set(collect()) } })

  const requests = children2(counter('enqueuer_requests_total', 'HTTP requests received, by service and method.', ['service', 'method']))
  const published = children1(counter('enqueuer_requests_published_total', 'Requests published to the broker (and confirmed).', ['service']))
  const failed = children2(counter('enqueuer_requests_failed_total', 'Requests answered by relayq with an error, by reason.', ['service', 'reason']))
  const codes = children2(counter('enqueuer_response_codes_total', 'HTTP status codes sent to clients.', ['service', 'status_code']))
  const noConsumers = children1(counter('enqueuer_no_consumers_total', 'Requests refused because the service queue had no consumer.', ['service']))
  const queueNotFound = children1(counter('enqueuer_queue_not_found_total', 'Requests refused because the service queue does not exist.', ['service']))
  const replyTimeouts = children1(counter('enqueuer_reply_timeouts_total', 'Requests that got no reply in time (504).', ['service']))
  const latency = children1(histogram('enqueuer_request_latency_seconds', 'Time from request received to response sent.'))
  const publishLatency = children1(histogram('enqueuer_publish_latency_seconds', 'Time from request received to publish confirmed by the broker.'))
  const lateReplies = counter('enqueuer_late_replies_total', 'Replies that arrived after their request was answered, or for no known request.', []).labels()
  const breakerState = children1(new client.Gauge({ name: 'enqueuer_circuit_breaker_state', help: 'Per-service breaker: 0 closed, 1 half-open, 2 open.', labelNames: ['service'], registers, aggregator: 'max' }))
  const breakerTransitions = children2(counter('enqueuer_circuit_breaker_transitions_total', 'Per-service breaker transitions, by the state entered.', ['service', 'state']))
  const reconnects = counter('relayq_broker_reconnects_total', 'Broker connections re-established after a loss.', ['connection']).labels('enqueuer')
  const jobsCreated = children1(counter('enqueuer_async_jobs_created_total', 'Async jobs accepted (202).', ['service']))
  const jobsCompleted = children2(counter('enqueuer_async_jobs_completed_total', 'Async jobs finished, by status.', ['service', 'status']))
  const jobsRetrieved = children1(counter('enqueuer_async_jobs_retrieved_total', 'Job status reads.', ['service']))
  const idempotency = children2(counter('enqueuer_idempotency_total', 'Requests with an Idempotency-Key answered from the store or refused, by outcome: replayed, conflict (409), mismatch (422), store_error.', ['service', 'outcome']))
  const streams = children2(counter('enqueuer_streams_total', 'Streamed responses, by how they ended: complete, or the cause that cut them (client_gone, idle_timeout, send_timeout, gap, second_stream, dequeuer_error, malformed, broker_lost, draining).', ['service', 'result']))
  const streamChunks = children1(counter('enqueuer_stream_chunks_total', 'Body messages of streamed responses written to clients.', ['service']))
  const streamBytes = children1(counter('enqueuer_stream_bytes_total', 'Body bytes of streamed responses written to clients.', ['service']))
  const streamFirst = children1(histogram('enqueuer_stream_first_message_seconds', 'Time from request received to a stream\'s status and headers written (its time to first byte).'))
  gauge('enqueuer_inflight_requests', 'Requests being handled now.', gauges.inflight)
  gauge('enqueuer_pending_replies', 'Published requests waiting for their reply.', gauges.pendingReplies)
  gauge('enqueuer_response_buffered_bytes', 'Bytes of answers being written to clients (held until the client reads them).', gauges.bufferedBytes ?? (() => 0))
  const coldStarts = children1(histogram('enqueuer_cold_start_seconds', 'Time a request waited for its service\'s first consumer (ENQUEUER_NO_CONSUMERS=wait).'))
  const waiting = gauges.waitingForConsumer
  new client.Gauge({
    name: 'enqueuer_waiting_for_consumer',
    help: 'Requests waiting for their service\'s first consumer now (ENQUEUER_NO_CONSUMERS=wait).',
    labelNames: ['service'],
    registers,
    aggregator: 'sum',
    collect () {
      this.reset()
      if (waiting !== undefined) for (const [service, n] of waiting()) this.set({ service }, n)
    },
  })
  const sendTimeouts = counter('enqueuer_send_timeouts_total', 'Answers abandoned because the client read nothing for ENQUEUER_SEND_TIMEOUT_MS.', []).labels()
  const connectionGauge = (name: string, help: string, collect: () => boolean, aggregator: client.Aggregator) =>
    new client.Gauge({ name, help, labelNames: ['connection'], registers, aggregator, collect () { this.set({ connection: 'enqueuer' }, collect() ? 1 : 0) } })
  connectionGauge('relayq_broker_connected', 'Broker connection state: 1 connected, 0 not.', gauges.brokerUp, 'min')
  connectionGauge('relayq_broker_blocked', 'Broker blocked the connection (memory or disk alarm): 1 yes.', gauges.brokerBlocked, 'max')

  return {
    received (service: string, method: string): void { requests(service, method).inc() },
    published (service: string, seconds: number): void {
      published(service).inc()
      publishLatency(service).observe(seconds)
    },
    answered (service: string, status: number, seconds: number): void {
      codes(service, String(status)).inc()
      latency(service).observe(seconds)
    },
    failed (service: string, code: string): void {
      failed(service, reasonOf(code)).inc()
      if (code === 'RQ_ERR_NO_CONSUMERS') noConsumers(service).inc()
      else if (code === 'RQ_ERR_QUEUE_NOT_FOUND') queueNotFound(service).inc()
      else if (code === 'RQ_ERR_REPLY_TIMEOUT') replyTimeouts(service).inc()
    },
    lateReply (): void { lateReplies.inc() },
    sendTimedOut (): void { sendTimeouts.inc() },
    breaker (service: string, state: 'closed' | 'half_open' | 'open'): void {
      breakerState(service).set(state === 'closed' ? 0 : state === 'half_open' ? 1 : 2)
      breakerTransitions(service, state).inc()
    },
    reconnected (): void { reconnects.inc() },
    coldStart (service: string, seconds: number): void { coldStarts(service).observe(seconds) },
    jobCreated (service: string): void { jobsCreated(service).inc() },
    jobCompleted (service: string, status: string): void { jobsCompleted(service, status).inc() },
    jobRetrieved (service: string): void { jobsRetrieved(service).inc() },
    idempotency (service: string, outcome: string): void { idempotency(service, outcome).inc() },
    streamStarted (service: string, seconds: number): void { streamFirst(service).observe(seconds) },
    streamChunk (service: string, bytes: number): void {
      streamChunks(service).inc()
      streamBytes(service).inc(bytes)
    },
    streamEnded (service: string, result: string): void { streams(service, result).inc() },
  }
}

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES)

/**
 * RQ_ERR_REPLY_TIMEOUT -> reply_timeout: the error code as a short label
 * value. Codes also arrive in replies (`x-relayq-error`), which anyone who can
 * publish may write: only relayq's own codes become labels, anything else is
 * `unknown`, so the number of series stays bounded.
 */
export function reasonOf (code: string): string {
  if (!KNOWN_CODES.has(code)) return 'unknown'
  return code.replace(/^RQ_ERR_/, '').toLowerCase()
}
