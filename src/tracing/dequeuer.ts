// The dequeuer's spans: a CONSUMER `process` span per delivery (child of the
// context the message carries, so it joins the enqueuer's trace), a CLIENT
// span for the call to the service (its context is the traceparent the
// service receives), and a PRODUCER `send` span for the reply. The process
// span ends when the delivery is settled, with its outcome.
import { SpanKind, TraceFlags, type Attributes, type Span, type SpanContext } from '@opentelemetry/api'
import type { CallResult } from '../dequeuer/breaker'
import type { Delivery } from '../dequeuer/consumer'
import type { Outcome } from '../dequeuer/outcome'
import type { Prepared } from '../dequeuer/prepare'
import { A, N, SENT_AT, SYSTEM, TEMPORARY, TRACEPARENT, TRACESTATE, type ProcessOutcome } from './semconv'
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from './traceparent'
import { failSpan, logIds, type Tracing } from './tracing'

/** What a delivery carries while it is traced (Delivery.trace): its span, or for one left out the traceparent it hands on. */
class Processing {
  constructor (readonly span: Span, readonly ctx: SpanContext) {}
}

class LeftOut {
  constructor (readonly traceparent: string) {}
}

function processing (d: Delivery): Processing | undefined {
  return d.trace instanceof Processing ? d.trace : undefined
}

const MAX_WAIT_MS = 30 * 86400 * 1000

export class DequeuerTracing {
  /** The service's port, as server.port says it. */
  private readonly port: number

  constructor (private readonly t: Tracing, private readonly queue: string, private readonly downstream: URL) {
    this.port = Number(downstream.port === '' ? (downstream.protocol === 'https:' ? 443 : 80) : downstream.port)
  }

  /**
   * A delivery arrived: its CONSUMER span starts now, if the sampler takes
   * it. One it leaves out gets no span at all: its traceparent reaches the
   * service as it came (the calls below find no span and do nothing); one
   * that came without a valid traceparent hands the service a new trace's,
   * unsampled, as the enqueuer does for a request, so a parent-based sampler
   * there leaves it out too.
   */
  received (d: Delivery): void {
    const props = d.msg.properties
    const headers = (props.headers ?? {}) as Record<string, unknown>
    const carried = parseTraceparent(headers[TRACEPARENT])
    // A message without a context (another publisher's) starts a trace here, sampled as a new request is.
    const traceId = carried === null ? newTraceId() : carried.traceId
    if (!this.t.samples(carried, traceId)) {
      // The traceparent a left-out delivery without a valid one of its own hands the service: a new trace, unsampled.
      if (carried === null) d.trace = new LeftOut(formatTraceparent(traceId, newSpanId(), TraceFlags.NONE))
      return
    }
    const wait = queueWaitMs(headers[SENT_AT], props.timestamp)
    const name = N.process(this.queue)
    const attributes: Attributes = {
      [A.system]: SYSTEM,
      [A.operationName]: 'process',
      [A.operationType]: 'process',
      [A.destinationName]: this.queue,
      [A.consumerGroup]: this.queue,
      [A.routingKey]: d.msg.fields.routingKey,
      [A.deliveryTag]: d.msg.fields.deliveryTag,
      [A.bodySize]: d.msg.content.length,
    }
    if (typeof props.messageId === 'string') attributes[A.messageId] = props.messageId
    if (typeof props.correlationId === 'string') attributes[A.conversationId] = props.correlationId
    if (wait !== null) attributes[A.queueWaitMs] = wait
    const span = carried === null ? this.t.startRoot(traceId, name, SpanKind.CONSUMER, attributes) : this.t.start(name, SpanKind.CONSUMER, this.t.remoteParent(carried, headers[TRACESTATE]), attributes)
    d.trace = new Processing(span, span.spanContext())
  }

  /**
   * The call to the service starts: a CLIENT span whose context replaces the
   * traceparent (and tracestate) the service receives.
   */
  calling (p: Prepared): Span | null {
    const proc = processing(p.d)
    if (proc === undefined) {
      if (p.d.trace instanceof LeftOut) {
        p.forward.headers[TRACEPARENT] = p.d.trace.traceparent
        delete p.forward.headers[TRACESTATE]
      }
      return null
    }
    proc.span.setAttribute(A.attempt, p.attempt)
    const method = p.forward.method
    const span = this.t.start(N.http(method), SpanKind.CLIENT, proc.ctx, {
      [A.method]: method,
      [A.serverAddress]: this.downstream.hostname,
      [A.serverPort]: this.port,
      [A.urlPath]: pathOf(p.forward.path),
    })
    this.t.inject(span, p.forward.headers)
    return span
  }

  /** The call to the service ended. */
  called (span: Span, result: CallResult | null): void {
    if (result === null) failSpan(span, 'RQ_ERR_MALFORMED_MESSAGE')
    else if (typeof result === 'symbol') failSpan(span, 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', 'circuit breaker open')
    else if (result.kind === 'error') failSpan(span, result.code, result.message)
    else {
      span.setAttribute(A.status, result.status)
      if (result.status >= 500) failSpan(span, String(result.status))
    }
    span.end()
  }

  /** The reply publish, in a PRODUCER span that is a child of the delivery's span (a delivery left out publishes as is, with no promise of its own). */
  replying (d: Delivery, replyTo: string, publish: () => Promise<void>): Promise<void> {
    const proc = processing(d)
    return proc === undefined ? publish() : this.replyingIn(proc, d, replyTo, publish)
  }

  private async replyingIn (proc: Processing, d: Delivery, replyTo: string, publish: () => Promise<void>): Promise<void> {
    const temporary = replyTo.startsWith('amq.rabbitmq.reply-to')
    const destination = temporary ? TEMPORARY : replyTo
    const attributes: Attributes = {
      [A.system]: SYSTEM,
      [A.operationName]: 'send',
      [A.operationType]: 'send',
      [A.destinationName]: destination,
    }
    if (temporary) attributes[A.destinationTemporary] = true
    attributes[A.routingKey] = replyTo
    if (typeof d.msg.properties.correlationId === 'string') attributes[A.conversationId] = d.msg.properties.correlationId
    const span = this.t.start(N.send(destination), SpanKind.PRODUCER, proc.ctx, attributes)
    try {
      await publish()
    } catch (err) {
      failSpan(span, 'RQ_ERR_BROKER_UNAVAILABLE', (err as Error).message)
      throw err
    } finally {
      span.end()
    }
  }

  /** The delivery is settled: its span ends with the outcome (and relayq's error code, if it ends in one). */
  settled (d: Delivery, outcome: Outcome, committed: boolean): void {
    const proc = processing(d)
    if (proc === undefined) return
    d.trace = undefined
    const span = proc.span
    const name = committed ? outcomeName(outcome) : 'returned'
    span.setAttribute(A.outcome, name)
    if (outcome.kind === 'reply' || outcome.kind === 'streamed') span.setAttribute(A.status, outcome.result.status)
    if (outcome.kind === 'streamed' && outcome.result.code !== undefined) failSpan(span, outcome.result.code)
    if (outcome.kind === 'dead_letter') span.setAttribute(A.deadLetterReason, outcome.reason)
    if (outcome.kind === 'error_reply' || outcome.kind === 'retry' || outcome.kind === 'dead_letter') failSpan(span, outcome.code, outcome.detail)
    else if (outcome.kind === 'drop') failSpan(span, 'RQ_ERR_DEADLINE_EXCEEDED')
    span.end()
  }

  /** trace_id and span_id for a log line about this delivery (for one left out, the context it carries). */
  logIds (d: Delivery): { trace_id?: string, span_id?: string } {
    const proc = processing(d)
    if (proc !== undefined) return logIds(proc.span)
    const carried = parseTraceparent(d.trace instanceof LeftOut ? d.trace.traceparent : (d.msg.properties.headers as Record<string, unknown> | undefined)?.[TRACEPARENT])
    return carried === null ? {} : { trace_id: carried.traceId, span_id: carried.spanId }
  }
}

function outcomeName (o: Outcome): ProcessOutcome {
  switch (o.kind) {
    case 'reply': return 'replied'
    case 'streamed': return o.result.cut === null ? 'streamed' : 'stream_cut'
    case 'error_reply': return 'error_replied'
    case 'retry': return 'retried'
    case 'dead_letter': return o.reason === 'expired' ? 'expired' : 'dead_lettered'
    case 'drop': return 'expired'
    case 'requeue': return 'requeued'
    case 'recount': return 'recounted'
  }
}

/** Milliseconds since the enqueuer published (its x-relayq-sent-at), else from the whole-second AMQP timestamp; null if neither is usable. */
function queueWaitMs (sentAt: unknown, timestamp: unknown): number | null {
  const now = Date.now()
  const ms = typeof sentAt === 'string' && /^\d{1,15}$/.test(sentAt)
    ? Number(sentAt)
    : typeof timestamp === 'number' && timestamp > 0 ? timestamp * 1000 : null
  if (ms === null || Math.abs(now - ms) > MAX_WAIT_MS) return null
  return Math.max(0, now - ms)
}

function pathOf (pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?')
  return q === -1 ? pathAndQuery : pathAndQuery.slice(0, q)
}
