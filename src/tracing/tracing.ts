// The one tracing object of a process, null when tracing is off: every hook on
// the request path is `if (tracing !== null)` and nothing else while it is.
// Contexts are passed explicitly (no context manager, no async hooks): a
// request's spans are children of the span the step before handed on.
import { SpanKind, SpanStatusCode, type Attributes, type Span, type SpanContext } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import type { Logger } from 'pino'
import type { SamplerName, TracingConfig } from '../config/types'
import type { TracingMetrics } from '../metrics/tracing'
import { createPipeline, type SpanPipeline } from './provider'
import { RecordedSpan } from './span'
import { A, SEMCONV_VERSION, TRACEPARENT, TRACESTATE } from './semconv'
import { formatTraceparent, headerText, newSpanId, type TraceParent } from './traceparent'

export { SpanKind }

/** Shutdown waits at most this long for the last spans to go out. */
const SHUTDOWN_FLUSH_MS = 2000

type Carrier = Record<string, unknown>

export class Tracing {
  private readonly parentBased: boolean
  /** The root decision on a trace id's ratio value: below this, sampled (the SDK's TraceIdRatioBasedSampler bound). */
  private readonly bound: number

  constructor (private readonly pipeline: SpanPipeline, samplerName: SamplerName, ratio: number) {
    this.parentBased = samplerName.startsWith('parentbased_')
    const root = samplerName.replace('parentbased_', '')
    this.bound = root === 'always_on' ? Infinity : root === 'always_off' ? -1 : ratioBound(ratio)
  }

  /**
   * The configured sampler's decision for a request, taken before any
   * OpenTelemetry object exists, so a request left out costs next to
   * nothing. It is the SDK sampler's decision, worked out here: asking the
   * SDK's sampler (a context lookup, an id check by regular expression, two
   * objects) cost more than the rest of an unsampled request's tracing. A
   * parent-based sampler follows a parent's sampled flag (its defaults,
   * which relayq keeps); the root decides on the trace id, which is valid
   * here (relayq's own, or read by parseTraceparent).
   * test/unit/tracing-fast-path.test.ts holds this to the SDK's answers.
   */
  samples (parent: TraceParent | null, traceId: string): boolean {
    if (parent !== null && this.parentBased) return parent.sampled
    return ratioValue(traceId) < this.bound
  }

  /** start() for a request without a parent, whose trace id the sampling decision was taken on. */
  startRoot (traceId: string, name: string, kind: SpanKind, attributes: Attributes | null): Span {
    return this.record(name, kind, undefined, traceId, attributes)
  }

  /**
   * The span context of a remote parent: a traceparent already read (by
   * parseTraceparent) and the `tracestate` beside it (an HTTP header or a
   * message header). What OpenTelemetry's W3C propagator would extract, built
   * without its regular expression and context copies
   * (test/unit/tracing-fast-path.test.ts compares the two).
   */
  remoteParent (parent: TraceParent, tracestate: unknown): SpanContext {
    const state = headerText(tracestate)
    const sc: SpanContext = { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.flags, isRemote: true }
    if (state !== null && state !== '') sc.traceState = new TraceState(state)
    return sc
  }

  /**
   * Writes the span's context as `traceparent`/`tracestate` (a tracestate the
   * caller sent travels in the span's context), as OpenTelemetry's W3C
   * propagator writes them.
   */
  inject (span: Span, carrier: Carrier): void {
    const sc = span.spanContext()
    carrier[TRACEPARENT] = formatTraceparent(sc.traceId, sc.spanId, sc.traceFlags)
    if (sc.traceState === undefined) delete carrier[TRACESTATE]
    else carrier[TRACESTATE] = sc.traceState.serialize()
  }

  /**
   * A span inside a request already sampled: a child of `parent` (a span's
   * context, or a remote parent's), in its trace. Parents travel as span
   * contexts, not OpenTelemetry Contexts: each Context made is a copy of a
   * Map, and relayq's spans need nothing else from one. `attributes` becomes
   * the span's own (relayq builds a new object for each span).
   */
  start (name: string, kind: SpanKind, parent: SpanContext, attributes: Attributes | null): Span {
    // No span of an unsampled request is started (its hooks stop at the sampling decision). A parent that has
    // ended still gets its child: the SERVER span ends when the client goes away, and its publish goes on.
    return this.record(name, kind, parent, parent.traceId, attributes)
  }

  private record (name: string, kind: SpanKind, parent: SpanContext | undefined, traceId: string, attributes: Attributes | null): Span {
    const span = new RecordedSpan(name, kind, parent, traceId, newSpanId(), parent?.traceState, this.pipeline)
    if (attributes !== null) span.takeAttributes(attributes)
    return span
  }

  /** Sends the spans queued now. */
  flush (): Promise<void> {
    return this.pipeline.forceFlush()
  }

  async shutdown (): Promise<void> {
    await Promise.race([this.pipeline.shutdown(), new Promise((resolve) => setTimeout(resolve, SHUTDOWN_FLUSH_MS).unref())])
  }
}

export function createTracing (cfg: TracingConfig | null, mode: string, metrics: TracingMetrics, logger: Logger): Tracing | null {
  if (cfg === null) return null
  const pipeline = createPipeline(cfg, mode, metrics, logger)
  logger.info({ url: redactUrl(cfg.url), protocol: cfg.protocol, sampler: cfg.sampler, ratio: cfg.ratio, semconv: SEMCONV_VERSION }, 'tracing on')
  return new Tracing(pipeline, cfg.sampler, cfg.ratio)
}

/** The SDK's TraceIdRatioBasedSampler: sampled when ratioValue(traceId) is below this. */
function ratioBound (ratio: number): number {
  const r = Number.isNaN(ratio) ? 0 : Math.min(1, Math.max(0, ratio))
  return r === 1 ? 0x100000000 : Math.floor(r * 0xffffffff)
}

/** The SDK's TraceIdRatioBasedSampler's value of a trace id: its four 32-bit words XORed. */
function ratioValue (traceId: string): number {
  let acc = 0
  for (let i = 0; i < 32; i += 8) {
    let word = 0
    for (let j = i; j < i + 8; j++) {
      const c = traceId.charCodeAt(j)
      word = (word << 4) | (c < 58 ? c - 48 : c < 71 ? c - 55 : c - 87)
    }
    acc = (acc ^ word) >>> 0
  }
  return acc
}

/** Ends a span as relayq's own error: status ERROR and error.type the RQ_ERR code. */
export function failSpan (span: Span, code: string, message?: string): void {
  span.setAttribute(A.errorType, code)
  span.setStatus(message === undefined ? { code: SpanStatusCode.ERROR } : { code: SpanStatusCode.ERROR, message })
}

/** trace_id and span_id for a log line about this span's request. */
export function logIds (span: Span | null | undefined): { trace_id?: string, span_id?: string } {
  if (span === null || span === undefined) return {}
  const c = span.spanContext()
  return { trace_id: c.traceId, span_id: c.spanId }
}

function redactUrl (url: string): string {
  const u = new URL(url)
  u.username = ''
  u.password = ''
  return u.href
}
