// relayq's recording span: what OpenTelemetry's SDK span does for the spans
// relayq records, without its per-span machinery (a span processor call at
// start, limits objects, the parent's ids checked by pattern, the sampler,
// time kept twice). At 100% sampling the SDK's span cost more than everything
// else tracing does per request. It is an API Span to relayq's code and a
// ReadableSpan to the SDK's batch processor and exporters, which take it as
// their own (test/unit/tracing-span.test.ts serialises it with the SDK's
// serialiser and compares it with an SDK span's). For the calls relayq makes
// its rules are the SDK span's: no change after end, an ERROR status keeps its
// message, an OK one is final, at most 128 attributes; times are wall-clock at
// the start and monotonic after it. Events and links are kept simply (at most
// 128 each), as relayq records none.
import {
  diag, SpanStatusCode, TraceFlags, type Attributes, type AttributeValue, type Exception, type HrTime, type Link, type Span,
  type SpanContext, type SpanKind, type SpanStatus, type TimeInput, type TraceState,
} from '@opentelemetry/api'
import { addHrTimes, hrTimeDuration, isAttributeValue, isTimeInput, millisToHrTime, sanitizeAttributes, timeInputToHrTime, type InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace'

/** The SDK's default limit of attributes, events and links per span. */
const LIMIT = 128

const NOT_YET: HrTime = [0, 0]
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET }
const NO_LINKS: Link[] = []
const NO_EVENTS: TimedEvent[] = []

/** Where an ended span goes: the batch processor, through relayq's bound. */
export interface SpanSink {
  onEnd: (span: ReadableSpan) => void
}

/** What every span of one process shares. */
export interface SpanOrigin {
  readonly resource: Resource
  readonly scope: InstrumentationScope
  readonly sink: SpanSink
}

export class RecordedSpan implements Span, ReadableSpan {
  attributes: Attributes = {}
  // relayq records neither: every span shares one empty list until it has one of its own.
  links: Link[] = NO_LINKS
  events: TimedEvent[] = NO_EVENTS
  readonly startTime: HrTime
  // Replaced, never changed in place: until then every span shares these.
  endTime: HrTime = NOT_YET
  duration: HrTime = NOT_YET
  status: SpanStatus = UNSET
  ended = false
  droppedAttributesCount = 0
  droppedEventsCount = 0
  droppedLinksCount = 0
  readonly resource: Resource
  readonly instrumentationScope: InstrumentationScope
  readonly parentSpanContext?: SpanContext
  private readonly context: SpanContext
  private count = 0
  /** performance.now() at the start: later times are the start plus the monotonic time since, as the SDK span's. */
  private readonly startedAt: number

  constructor (
    public name: string,
    readonly kind: SpanKind,
    parent: SpanContext | undefined,
    traceId: string,
    spanId: string,
    traceState: TraceState | undefined,
    private readonly origin: SpanOrigin,
  ) {
    this.context = traceState === undefined
      ? { traceId, spanId, traceFlags: TraceFlags.SAMPLED }
      : { traceId, spanId, traceFlags: TraceFlags.SAMPLED, traceState }
    if (parent !== undefined) this.parentSpanContext = parent
    this.startTime = millisToHrTime(Date.now())
    this.startedAt = performance.now()
    this.resource = origin.resource
    this.instrumentationScope = origin.scope
  }

  spanContext (): SpanContext {
    return this.context
  }

  setAttribute (key: string, value: AttributeValue | undefined): this {
    if (value == null || this.ended || key.length === 0 || !isAttributeValue(value)) return this
    const isNew = !Object.prototype.hasOwnProperty.call(this.attributes, key)
    if (isNew && this.count >= LIMIT) {
      this.droppedAttributesCount++
      return this
    }
    this.attributes[key] = value
    if (isNew) this.count++
    return this
  }

  /**
   * A new span's attributes, taken as they are when every value is one
   * (relayq's own, built for this span: no copy, no check per key); else
   * through setAttribute, as any other.
   */
  takeAttributes (attributes: Attributes): void {
    let n = 0
    for (const key in attributes) {
      const value = attributes[key]
      if (value == null || key.length === 0 || !isAttributeValue(value)) {
        n = -1
        break
      }
      n++
    }
    if (n >= 0 && n <= LIMIT && this.count === 0) {
      this.attributes = attributes
      this.count = n
    } else {
      this.setAttributes(attributes)
    }
  }

  setAttributes (attributes: Attributes): this {
    for (const key in attributes) {
      if (Object.prototype.hasOwnProperty.call(attributes, key)) this.setAttribute(key, attributes[key])
    }
    return this
  }

  addEvent (name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this
    if (this.events === NO_EVENTS) this.events = []
    if (this.events.length >= LIMIT) {
      this.events.shift()
      this.droppedEventsCount++
    }
    let attributes: Attributes | undefined
    if (isTimeInput(attributesOrTime)) time = attributesOrTime
    else attributes = attributesOrTime
    this.events.push({ name, attributes: sanitizeAttributes(attributes), time: time === undefined ? this.now() : timeInputToHrTime(time), droppedAttributesCount: 0 })
    return this
  }

  addLink (link: Link): this {
    if (this.ended) return this
    if (this.links === NO_LINKS) this.links = []
    if (this.links.length >= LIMIT) this.droppedLinksCount++
    else this.links.push(link)
    return this
  }

  addLinks (links: Link[]): this {
    for (const link of links) this.addLink(link)
    return this
  }

  setStatus (status: SpanStatus): this {
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === 'string' ? { code: status.code, message: status.message } : { code: status.code }
    return this
  }

  updateName (name: string): this {
    if (!this.ended) this.name = name
    return this
  }

  end (endTime?: TimeInput): void {
    if (this.ended) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`)
      return
    }
    this.ended = true
    this.endTime = endTime === undefined ? this.now() : timeInputToHrTime(endTime)
    this.duration = hrTimeDuration(this.startTime, this.endTime)
    if (this.duration[0] < 0) {
      this.endTime = this.startTime
      this.duration = [0, 0]
    }
    this.origin.sink.onEnd(this)
  }

  private now (): HrTime {
    return addHrTimes(this.startTime, millisToHrTime(performance.now() - this.startedAt))
  }

  isRecording (): boolean {
    return !this.ended
  }

  recordException (exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {}
    // As the SDK span: empty values count as absent, and an exception with neither type nor message is not recorded.
    if (typeof exception === 'string') attributes['exception.message'] = exception
    else {
      const type = exception.code !== undefined && exception.code !== '' && exception.code !== 0 ? String(exception.code) : exception.name
      if (type !== undefined && type !== '') attributes['exception.type'] = type
      if (exception.message !== undefined && exception.message !== '') attributes['exception.message'] = exception.message
      if (exception.stack !== undefined && exception.stack !== '') attributes['exception.stacktrace'] = exception.stack
    }
    if (attributes['exception.type'] !== undefined || (attributes['exception.message'] !== undefined && attributes['exception.message'] !== '')) this.addEvent('exception', attributes, time)
  }
}
