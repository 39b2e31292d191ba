// relayq's RecordedSpan against the SDK's span: the same operations leave the
// same span behind, and the SDK's own serialisers take it as one of theirs
// (so the batch processor and both exporters can carry it). A change in the
// SDK span's rules or in what its serialisers read fails here.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace'
import { encodeSpans } from '../../src/tracing/otlp-proto'
import { RecordedSpan, type SpanOrigin } from '../../src/tracing/span'
import { newSpanId, newTraceId } from '../../src/tracing/traceparent'

const resource = resourceFromAttributes({ 'service.name': 'relayq', 'relayq.mode': 'dequeuer' })
const scope = { name: 'relayq', version: '1.0.0' }

function origin (ended: ReadableSpan[]): SpanOrigin {
  return { resource, scope, sink: { onEnd: (s) => ended.push(s) } }
}

/** What a span says, without its ids and times. */
function shape (s: ReadableSpan): unknown {
  return {
    name: s.name, kind: s.kind, attributes: s.attributes, status: s.status, dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
    events: s.events.map((e) => [e.name, e.attributes]), links: s.links.length, flags: s.spanContext().traceFlags, parent: s.parentSpanContext?.spanId,
    traceState: s.spanContext().traceState?.serialize(), ended: s.ended,
  }
}

/** The same calls on a span, the way relayq's code (and anyone's) might make them. */
function exercise (span: Span, err: Error): void {
  span.setAttribute('messaging.system', 'rabbitmq')
  span.setAttributes({ n: 1, f: 1.5, b: false, list: ['a', 'b'], nothing: undefined, '': 'empty key' })
  span.setAttribute('bad', { nested: true } as never)
  span.setStatus({ code: SpanStatusCode.UNSET })
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE' })
  span.updateName('renamed')
  span.addEvent('an event', { k: 'v' })
  span.recordException(err)
  for (let i = 0; i < 130; i++) span.setAttribute(`many.${i}`, i)
  span.end()
  span.setAttribute('after', 'end')
  span.updateName('after end')
  span.setStatus({ code: SpanStatusCode.OK })
}

describe('RecordedSpan', () => {
  it('the same calls leave the same span as the SDK\'s, as child of a remote parent with a tracestate', async () => {
    const exporter = new InMemorySpanExporter()
    const provider = new TracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor({ exporter })] })
    const parent = { traceId: newTraceId(), spanId: newSpanId(), traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState('k=v') }
    const sdkSpan = provider.getTracer('relayq', '1.0.0').startSpan('x', { kind: SpanKind.CONSUMER }, trace.setSpanContext(ROOT_CONTEXT, parent))
    const ended: ReadableSpan[] = []
    const ours = new RecordedSpan('x', SpanKind.CONSUMER, parent, parent.traceId, newSpanId(), parent.traceState, origin(ended))
    const err = Object.assign(new Error('boom'), { code: 'ECONNRESET' })
    exercise(sdkSpan, err)
    exercise(ours, err)
    await provider.forceFlush()
    const theirs = exporter.getFinishedSpans()
    assert.equal(theirs.length, 1)
    assert.equal(ended.length, 1, 'ended once, into the sink')
    assert.deepEqual(shape(ended[0]!), shape(theirs[0]!))
    assert.ok(ours.duration[0] >= 0 && ours.endTime[0] >= ours.startTime[0])
  })

  it('the SDK\'s serialisers read it whole: protobuf the same bytes as relayq\'s encoder, JSON with its ids, times and attributes', () => {
    const ended: ReadableSpan[] = []
    const o = origin(ended)
    const root = new RecordedSpan('root', SpanKind.SERVER, undefined, newTraceId(), newSpanId(), undefined, o)
    const child = new RecordedSpan('child', SpanKind.PRODUCER, root.spanContext(), root.spanContext().traceId, newSpanId(), undefined, o)
    child.setAttributes({ 'messaging.destination.name': 'orders_requests', 'messaging.message.body.size': 256 })
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'no' })
    child.end()
    root.end()
    assert.equal(Buffer.from(encodeSpans(ended)).toString('hex'), Buffer.from(ProtobufTraceSerializer.serializeRequest(ended)!).toString('hex'))
    const json = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(ended)!).toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ scope: { name: string }, spans: Array<Record<string, unknown>> }> }> }
    const spans = json.resourceSpans[0]!.scopeSpans[0]!.spans
    assert.equal(json.resourceSpans[0]!.scopeSpans[0]!.scope.name, 'relayq')
    assert.equal(spans[0]!.parentSpanId, root.spanContext().spanId)
    assert.equal(spans[0]!.traceId, root.spanContext().traceId)
    assert.ok(BigInt(spans[0]!.endTimeUnixNano as string) >= BigInt(spans[0]!.startTimeUnixNano as string))
    assert.ok(Math.abs(Number(BigInt(spans[1]!.startTimeUnixNano as string) / 1_000_000n) - Date.now()) < 60_000, 'times are wall-clock')
  })
})
