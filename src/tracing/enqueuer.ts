// The enqueuer's spans: a SERVER span per request (child of the caller's
// traceparent, if any), a PRODUCER `send` span from publish to the broker's
// confirm, and an INTERNAL `wait reply` span from the confirm to the reply.
// The message carries the PRODUCER span's context, so the dequeuer's spans
// join this trace.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { SpanKind, TraceFlags, type Attributes, type Span, type SpanContext } from '@opentelemetry/api'
import type { HeaderTable } from '../http/headers'
import { A, N, SENT_AT, SYSTEM, TRACEPARENT, TRACESTATE } from './semconv'
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent, type TraceParent } from './traceparent'
import { failSpan, logIds, type Tracing } from './tracing'

/** What the request path sees of a request's trace, sampled or not. */
export interface RequestTrace {
  logIds: () => { trace_id?: string, span_id?: string }
  /** relayq answers this request with its own error (the code goes on the span when it ends). */
  failed: (code: string) => void
  /** Writes the trace context into the message headers; the spans of the publish and the wait, when sampled. */
  send: (info: SendInfo, headers: HeaderTable) => CallTrace | null
}

/**
 * The request's trace. The sampler decides first, on the caller's
 * traceparent or a new trace id: only a sampled request builds spans; one
 * left out only hands its context on.
 */
export function traceRequest (t: Tracing, req: IncomingMessage, res: ServerResponse): RequestTrace {
  const parent = parseTraceparent(req.headers.traceparent)
  const traceId = parent === null ? newTraceId() : parent.traceId
  if (!t.samples(parent, traceId)) return new UnsampledTrace(traceId, parent === null ? null : parent.spanId)
  return new ServerTrace(t, req, res, parent, traceId)
}

/**
 * A request the sampler left out: the message carries its context with the
 * sampled flag off, so the dequeuer and the service leave it out too. The
 * caller's parent id passes on (no span of relayq's stands between); a
 * request without a traceparent gets a new trace.
 */
class UnsampledTrace implements RequestTrace {
  private readonly spanId: string
  private readonly root: boolean

  constructor (private readonly traceId: string, parentSpanId: string | null) {
    this.spanId = parentSpanId ?? newSpanId()
    this.root = parentSpanId === null
  }

  logIds (): { trace_id?: string, span_id?: string } {
    return { trace_id: this.traceId, span_id: this.spanId }
  }

  failed (): void {}

  send (_info: SendInfo, headers: HeaderTable): null {
    headers[TRACEPARENT] = formatTraceparent(this.traceId, this.spanId, TraceFlags.NONE)
    // A caller's tracestate goes on with its traceparent; a new trace has none.
    if (this.root) delete headers[TRACESTATE]
    return null
  }
}

export interface SendInfo {
  readonly service: string
  readonly queue: string
  readonly correlationId: string
  readonly messageId: string
  readonly bodySize: number
  /** Set for an async job: nobody waits for its reply here. */
  readonly jobId: string | undefined
}

/** One sampled request's SERVER span; ends when its response closes, with the status and relayq's error code if any. */
export class ServerTrace implements RequestTrace {
  readonly span: Span
  private readonly ctx: SpanContext
  private code: string | null = null
  private readonly method: string

  /** `caller`: the caller's traceparent, if any; `traceId`: the trace id the request was sampled on (the caller's, or new). */
  constructor (private readonly t: Tracing, req: IncomingMessage, res: ServerResponse, caller: TraceParent | null, traceId: string) {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const method = this.method = req.method ?? 'GET'
    const name = N.http(method)
    const attributes: Attributes = {
      [A.method]: method,
      [A.urlPath]: q === -1 ? url : url.slice(0, q),
    }
    const client = req.socket.remoteAddress
    if (client !== undefined) attributes[A.clientAddress] = client
    this.span = caller === null ? t.startRoot(traceId, name, SpanKind.SERVER, attributes) : t.start(name, SpanKind.SERVER, t.remoteParent(caller, req.headers.tracestate), attributes)
    this.ctx = this.span.spanContext()
    // An unsampled request's span has nothing to end or record.
    if (this.span.isRecording()) res.once('close', () => this.closed(res))
  }

  /** trace_id and span_id for a log line about this request. */
  logIds (): { trace_id?: string, span_id?: string } {
    return logIds(this.span)
  }

  /** relayq answers this request with its own error (the code goes on the span when it ends). */
  failed (code: string): void {
    this.code = code
  }

  /**
   * Starts the PRODUCER span of the publish and writes its context (and the
   * publish time, for the dequeuer's queue wait) into the message headers.
   */
  send (info: SendInfo, headers: HeaderTable): CallTrace {
    if (this.span.isRecording()) {
      this.span.setAttributes({ [A.service]: info.service, [A.route]: `/${info.service}/*` })
      this.span.updateName(`${this.method} /${info.service}/*`)
    }
    const attributes: Attributes = {
      [A.system]: SYSTEM,
      [A.operationName]: 'send',
      [A.operationType]: 'send',
      [A.destinationName]: info.queue,
      [A.routingKey]: info.queue,
      [A.messageId]: info.messageId,
      [A.conversationId]: info.correlationId,
      [A.bodySize]: info.bodySize,
    }
    if (info.jobId !== undefined) attributes[A.jobId] = info.jobId
    const producer = this.t.start(N.send(info.queue), SpanKind.PRODUCER, this.ctx, attributes)
    this.t.inject(producer, headers)
    headers[SENT_AT] = String(Date.now())
    return new CallTrace(this, this.t, this.ctx, producer, info.jobId === undefined)
  }

  private closed (res: ServerResponse): void {
    this.span.setAttribute(A.status, res.statusCode)
    if (this.code !== null) failSpan(this.span, this.code)
    else if (res.statusCode >= 500) failSpan(this.span, String(res.statusCode))
    this.span.end()
  }
}

/** The spans of one published request, driven by its Call. */
export class CallTrace {
  private producer: Span | null
  private wait: Span | null = null

  constructor (private readonly server: ServerTrace, private readonly t: Tracing, private readonly ctx: SpanContext, producer: Span, private readonly waits: boolean) {
    this.producer = producer
  }

  /** The broker confirmed the publish: the send is done, the wait for the reply starts. */
  confirmed (): void {
    this.producer?.end()
    this.producer = null
    if (this.waits) this.wait = this.t.start(N.replyWait, SpanKind.INTERNAL, this.ctx, null)
  }

  /** The reply came; an error the dequeuer answered for the service is relayq's error too. */
  replied (errorCode: string | undefined): void {
    if (errorCode !== undefined) this.failed(errorCode)
  }

  failed (code: string): void {
    this.server.failed(code)
    if (this.producer !== null) failSpan(this.producer, code)
    else if (this.wait !== null) failSpan(this.wait, code)
  }

  logIds (): { trace_id?: string, span_id?: string } {
    return this.server.logIds()
  }

  /** The call ended, however: whatever is still open ends now. */
  ended (): void {
    this.producer?.end()
    this.wait?.end()
    this.producer = null
    this.wait = null
  }
}
