// relayq's OTLP/protobuf span encoder against the SDK's serialiser: the same
// spans, made by the real SDK, must give the same bytes. This is also the
// guard for an upgrade of @opentelemetry/otlp-transformer that changes what it
// writes (a new field, another order): this test fails, and otlp-proto.ts
// follows.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { attributeCache, encodeSpans } from '../../src/tracing/otlp-proto'

function provider (resource: Record<string, string | number>): { provider: TracerProvider, exporter: InMemorySpanExporter } {
  const exporter = new InMemorySpanExporter()
  return { exporter, provider: new TracerProvider({ resource: resourceFromAttributes(resource), spanProcessors: [new SimpleSpanProcessor({ exporter })] }) }
}

function same (spans: Parameters<typeof encodeSpans>[0]): void {
  const sdk = Buffer.from(ProtobufTraceSerializer.serializeRequest([...spans])!)
  const mine = Buffer.from(encodeSpans(spans))
  assert.equal(mine.toString('hex'), sdk.toString('hex'))
}

describe('OTLP/protobuf span encoding', () => {
  it('writes the SDK\'s bytes for every kind of attribute, status, event, link, parent and trace state', async () => {
    const { provider: p, exporter } = provider({ 'service.name': 'relayq', 'service.version': '1.2.3', 'relayq.mode': 'enqueuer', n: 7 })
    const tracer = p.getTracer('relayq', '0.1.0')
    const long = 'x'.repeat(200)
    const huge = 'y'.repeat(20_000)
    const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState('k=v,a=b') })
    const kinds = [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]
    const made: Span[] = []
    for (const kind of kinds) {
      const root = tracer.startSpan(`root ${kind}`, { kind })
      made.push(root)
      const child = tracer.startSpan(`child ${kind} ünïcode ✓`, {
        kind,
        attributes: {
          s: 'text', empty: '', long, huge, t: true, f: false, zero: 0, int: 42, neg: -7, big: 2 ** 40, bigNeg: -(2 ** 40), max: 2 ** 62,
          dbl: 3.25, negDbl: -0.5, nan: Number.NaN, inf: Infinity, strs: ['a', 'b'], nums: [1, 2.5, -3], bools: [true, false], mixed: ['a', null],
          'messaging.system': 'rabbitmq', 'emoji 🐇': 'ok',
        },
        links: [{ context: root.spanContext(), attributes: { why: 'retry' } }, { context: trace.getSpanContext(parent)! }],
      }, kind === SpanKind.CONSUMER ? parent : trace.setSpan(ROOT_CONTEXT, root))
      child.addEvent('plain')
      child.addEvent('with attributes', { a: 1, b: 'two', c: [true] }, [1_700_000_000, 123_456_789])
      if (kind === SpanKind.CLIENT) child.setStatus({ code: SpanStatusCode.ERROR, message: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE: it said no' })
      if (kind === SpanKind.SERVER) child.setStatus({ code: SpanStatusCode.ERROR })
      if (kind === SpanKind.PRODUCER) child.setStatus({ code: SpanStatusCode.OK })
      made.push(child)
    }
    for (const s of made) s.end()
    await p.forceFlush()
    const spans = exporter.getFinishedSpans()
    assert.equal(spans.length, 10)
    same(spans)
    same(spans.slice(0, 1))
    same([])
  })

  it('groups spans of two resources and two scopes as the SDK does, and a batch long enough for multi-byte lengths', async () => {
    const a = provider({ 'service.name': 'a' })
    const b = provider({ 'service.name': 'b', 'deployment.environment.name': 'test' })
    for (let i = 0; i < 300; i++) {
      const p = i % 3 === 0 ? b.provider : a.provider
      p.getTracer(i % 2 === 0 ? 'relayq' : 'other', i % 2 === 0 ? '1' : undefined).startSpan(`span ${i}`, { attributes: { i, 'messaging.message.id': randomBytes(8).toString('hex') } }).end()
    }
    await a.provider.forceFlush()
    await b.provider.forceFlush()
    const spans = [...a.exporter.getFinishedSpans(), ...b.exporter.getFinishedSpans()].sort(() => Math.random() - 0.5)
    assert.equal(spans.length, 300)
    same(spans)
  })

  it('writes the same bytes when attribute values repeat (each key remembers its encoded values) and when they do not', async () => {
    const { provider: p, exporter } = provider({ 'service.name': 'relayq' })
    const tracer = p.getTracer('relayq', '1')
    const long = 'z'.repeat(300)
    for (let i = 0; i < 400; i++) {
      tracer.startSpan('process orders_requests', {
        attributes: {
          'messaging.system': 'rabbitmq', 'messaging.destination.name': i % 3 === 0 ? 'orders_requests' : 'billing_requests',
          'http.response.status_code': i % 5 === 0 ? 503 : 200, 'relayq.flag': i % 2 === 0, zero: i % 2 === 0 ? 0 : -0,
          'messaging.message.id': randomBytes(8).toString('hex'), 'relayq.queue_wait_ms': i, ratio: i / 7, long, 'ünï': 'ü',
        },
      }).end()
    }
    await p.forceFlush()
    assert.equal(exporter.getFinishedSpans().length, 400)
    same(exporter.getFinishedSpans())
    same(exporter.getFinishedSpans().slice(0, 3))
  })

  it('caches the encoded attributes whose values repeat, gives up on a key whose values do not, and holds at most 512 keys', async () => {
    const { provider: p, exporter } = provider({ 'service.name': 'relayq' })
    const tracer = p.getTracer('relayq', '1')
    for (let i = 0; i < 1000; i++) {
      // A key of its own per span too: names a client controls must not grow the cache past its bound.
      tracer.startSpan('s', { attributes: { 'cache.test.repeats': 'rabbitmq', 'cache.test.unique': randomBytes(8).toString('hex'), [`cache.test.key.${i}`]: 1 } }).end()
    }
    await p.forceFlush()
    same(exporter.getFinishedSpans())
    assert.equal(attributeCache('cache.test.repeats').cachedValues, 1, 'a repeated value is encoded once and kept')
    assert.equal(attributeCache('cache.test.unique').cachedValues, null, 'a key whose values never repeat is given up on')
    assert.ok(attributeCache('').keys <= 512, `${attributeCache('').keys} keys cached`)
  })

  it('times of every size: the nanoseconds are exact past 2^53 (as the SDK computes them)', async () => {
    const { provider: p, exporter } = provider({})
    const times: Array<[number, number]> = [[0, 0], [1, 999_999_999], [1_700_000_000, 1], [4_294_967_295, 999_999_999], [18_446_744_073, 709_551_615]]
    for (const t of times) p.getTracer('t').startSpan('t', { startTime: t }).end(t)
    await p.forceFlush()
    assert.equal(exporter.getFinishedSpans().length, times.length)
    same(exporter.getFinishedSpans())
  })
})
