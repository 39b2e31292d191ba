// The tracing fast path: relayq reads the traceparent and takes the sampling
// decision itself, before any OpenTelemetry object exists, so an unsampled
// request costs next to nothing. These tests hold it to OpenTelemetry's own
// answers: the same parents accepted, the same decisions, and a left-out
// request handing on the context OpenTelemetry would have handed on.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, describe, it } from 'node:test'
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { SamplingDecision } from '@opentelemetry/sdk-trace'
import type { SamplerName, TracingConfig } from '../../src/config/types'
import { createLogger } from '../../src/log'
import { createTracingMetrics } from '../../src/metrics/tracing'
import { ServerTrace, traceRequest } from '../../src/tracing/enqueuer'
import { parseTraceparent } from '../../src/tracing/traceparent'
import { createTracing, SpanKind, type Tracing } from '../../src/tracing/tracing'
import { sdkSampler } from '../helpers/otel-sampler'

const hex = (bytes: number): string => randomBytes(bytes).toString('hex')

function tracing (sampler: SamplerName, ratio = 1): Tracing {
  // An unreachable collector: nothing here is exported (no span is ended into a flush).
  const cfg: TracingConfig = { url: 'http://127.0.0.1:9/v1/traces', protocol: 'http/protobuf', headers: {}, serviceName: 'test', resource: {}, sampler, ratio, maxQueueSize: 100, exportTimeoutMs: 1000 }
  return createTracing(cfg, 'enqueuer', createTracingMetrics(null), createLogger('silent'))!
}

function request (headers: Record<string, string>): { req: IncomingMessage, res: ServerResponse } {
  const req = { method: 'POST', url: '/orders/x', headers, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
  return { req, res: new EventEmitter() as unknown as ServerResponse }
}

const info = { service: 'orders', queue: 'orders_requests', correlationId: 'c', messageId: 'c', bodySize: 1, jobId: undefined }

describe('traceparent read without OpenTelemetry', () => {
  const otel = new W3CTraceContextPropagator()
  const otelParent = (v: unknown): string | null => {
    const sc = trace.getSpanContext(otel.extract(ROOT_CONTEXT, { traceparent: v }, { keys: () => ['traceparent'], get: (c, k) => (c as Record<string, string>)[k] }))
    return sc === undefined ? null : `${sc.traceId}/${sc.spanId}/${sc.traceFlags & 1}`
  }
  const t = hex(16)
  const s = hex(8)
  const t0 = hex(16)
  const s0 = hex(8)
  const cases = [
    `00-${t}-${s}-01`, `00-${t}-${s}-00`, `00-${t}-${s}-03`, `00-${t}-${s}-02`,
    ` 00-${t}-${s}-01`, `00-${t}-${s}-01 `, `\t00-${t}-${s}-01`, `  00-${t}-${s}-01`,
    `01-${t}-${s}-01`, `01-${t}-${s}-01-extra`, `00-${t}-${s}-01-extra`, `01-${t}-${s}-01extra`, `cc-${t}-${s}-01-what-ever`,
    `ff-${t}-${s}-01`, `00-${'0'.repeat(32)}-${s}-01`, `00-${t}-${'0'.repeat(16)}-01`,
    `00-${t.toUpperCase()}-${s}-01`, `00-${t}-${s}-0g`, `00-${t.slice(0, 31)}é-${s}-01`, `00-${t}-${s.slice(0, 15)}\u0161-01`, `00-${t}-${s}-0\u0131`,
    `00-${t}-${s}-ff`, `00-${t}-${s}-a0`, `00-${t}-${s}`, `00-${t.slice(1)}-${s}-01`, `00_${t}-${s}-01`, '', 'garbage',
  ]
  for (const c of cases) {
    it(`agrees with OpenTelemetry's propagator on ${JSON.stringify(c)}`, () => {
      const mine = parseTraceparent(c)
      assert.equal(mine === null ? null : `${mine.traceId}/${mine.spanId}/${mine.sampled ? 1 : 0}`, otelParent(c))
    })
  }
  it('makes the remote parent OpenTelemetry\'s propagator makes, tracestate included, and writes a span\'s context as it does', async () => {
    const t = tracing('parentbased_always_on')
    const getter = { keys: (c: Record<string, string>) => Object.keys(c), get: (c: Record<string, string>, k: string) => c[k] }
    for (const [tp, ts] of [[`00-${t0}-${s0}-01`, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'], [`00-${t0}-${s0}-03`, undefined], [`00-${t0}-${s0}-00`, ''], [`01-${t0}-${s0}-01-x`, 'k=v']] as Array<[string, string | undefined]>) {
      const carrier: Record<string, string> = ts === undefined ? { traceparent: tp } : { traceparent: tp, tracestate: ts }
      const theirs = trace.getSpanContext(otel.extract(ROOT_CONTEXT, carrier, getter))!
      const ours = t.remoteParent(parseTraceparent(tp)!, ts)
      assert.deepEqual({ ...ours, traceState: ours.traceState?.serialize() }, { ...theirs, traceState: theirs.traceState?.serialize() }, `${tp} ${ts}`)
      // A child span of that parent, written into a carrier both ways.
      const span = t.start('x', SpanKind.CLIENT, t.remoteParent(parseTraceparent(tp)!, ts), null)
      const mine: Record<string, unknown> = { tracestate: 'stale=1' }
      t.inject(span, mine)
      const sdk: Record<string, unknown> = {}
      otel.inject(trace.setSpan(ROOT_CONTEXT, span), sdk, { set: (c, k, v) => { c[k] = v } })
      assert.deepEqual(mine, sdk)
      // Not ended: nothing is exported to the unreachable collector.
    }
    await t.shutdown()
  })

  it('reads a message header sent as bytes or a repeated HTTP header', () => {
    assert.equal(parseTraceparent(Buffer.from(`00-${t}-${s}-01`))?.traceId, t)
    assert.equal(parseTraceparent([`00-${t}-${s}-00`, 'x'])?.sampled, false)
    assert.equal(parseTraceparent(42), null)
    assert.equal(parseTraceparent(undefined), null)
  })
})

describe('the sampling decision taken before the SDK', () => {
  const made: Tracing[] = []
  after(async () => { for (const t of made) await t.shutdown() })
  const samplers: Array<[SamplerName, number]> = [
    ['parentbased_always_on', 1], ['parentbased_always_off', 1], ['parentbased_traceidratio', 0.3],
    ['always_on', 1], ['always_off', 1], ['traceidratio', 0.3],
    // The ratio's edges, and a small one (relayq works the SDK's arithmetic out itself).
    ['parentbased_traceidratio', 0.01], ['traceidratio', 0], ['traceidratio', 1], ['traceidratio', 0.999999],
  ]
  for (const [name, ratio] of samplers) {
    it(`is the SDK's own for ${name} (${ratio}): with a sampled parent, an unsampled one and none`, () => {
      const t = tracing(name, ratio)
      made.push(t)
      const reference = sdkSampler(name, ratio)
      let sampled = 0
      for (let i = 0; i < 600; i++) {
        const traceId = hex(16)
        const kind = i % 3
        const parent = kind === 2 ? null : parseTraceparent(`00-${traceId}-${hex(8)}-0${kind}`)
        const fast = t.samples(parent, traceId)
        const context = parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, t.remoteParent(parent, undefined))
        const sdk = reference.shouldSample(context, traceId, 'x', SpanKind.SERVER, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED
        assert.equal(fast, sdk, `${name}, parent ${kind === 2 ? 'none' : kind === 1 ? 'sampled' : 'unsampled'}`)
        if (fast) sampled++
      }
      if (ratio === 0.3) assert.ok(sampled > 60 && sampled < 540, `${sampled} of 600 sampled at 0.3`)
    })
  }

  it('a root span carries the trace id the decision was taken on', () => {
    const t = tracing('parentbased_traceidratio', 0.5)
    made.push(t)
    const traceId = hex(16)
    assert.equal(t.startRoot(traceId, 'x', SpanKind.SERVER, null).spanContext().traceId, traceId)
    assert.notEqual(t.startRoot(hex(16), 'x', SpanKind.SERVER, null).spanContext().traceId, traceId)
  })
})

describe('a request the sampler leaves out', () => {
  const t = tracing('parentbased_traceidratio', 0)
  after(async () => { await t.shutdown() })

  it('hands on the caller\'s context with the sampled flag off, and its tracestate; builds no span', () => {
    const traceId = hex(16)
    const spanId = hex(8)
    const { req, res } = request({ traceparent: `00-${traceId}-${spanId}-00` })
    const rt = traceRequest(t, req, res)
    assert.ok(!(rt instanceof ServerTrace))
    const headers: Record<string, string> = { traceparent: `00-${traceId}-${spanId}-00`, tracestate: 'k=v' }
    assert.equal(rt.send(info, headers), null)
    assert.deepEqual(headers, { traceparent: `00-${traceId}-${spanId}-00`, tracestate: 'k=v' })
    assert.deepEqual(rt.logIds(), { trace_id: traceId, span_id: spanId })
  })

  it('without a traceparent (or with an invalid one) starts a new trace, unsampled, without a tracestate', () => {
    const { req, res } = request({ traceparent: 'nonsense', tracestate: 'k=v' })
    const headers: Record<string, string> = { traceparent: 'nonsense', tracestate: 'k=v' }
    traceRequest(t, req, res).send(info, headers)
    const written = parseTraceparent(headers.traceparent)
    assert.ok(written !== null)
    assert.equal(written.sampled, false)
    assert.equal(headers.tracestate, undefined)
    assert.match(headers.traceparent!, /^00-[\da-f]{32}-[\da-f]{16}-00$/)
  })

  it('a sampled caller under a sampler that does not follow parents gets the flag turned off', () => {
    const ratioOnly = tracing('traceidratio', 0)
    const traceId = hex(16)
    const spanId = hex(8)
    const { req, res } = request({ traceparent: `00-${traceId}-${spanId}-01` })
    const headers: Record<string, string> = { traceparent: `00-${traceId}-${spanId}-01` }
    traceRequest(ratioOnly, req, res).send(info, headers)
    assert.equal(headers.traceparent, `00-${traceId}-${spanId}-00`)
    void ratioOnly.shutdown()
  })
})
