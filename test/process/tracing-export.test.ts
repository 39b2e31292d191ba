// What tracing must never do: slow or fail a request because the collector is
// down, refusing or slow (spans are dropped and counted instead); and what its
// switches mean: the sampler, OTEL_SDK_DISABLED, and tracing off passing the
// caller's traceparent through unchanged.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { KIND, startReceiver, type Receiver } from '../helpers/otlp-receiver'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { waitFor } from '../helpers/wait'

const hex = (bytes: number): string => randomBytes(bytes).toString('hex')

describe('tracing: the collector never holds a request, and the switches do what they say', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: RelayProcess
  const service = uniqueService('trexp')
  const started: RelayProcess[] = []
  const receivers: Receiver[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
    const admin = await freePort()
    // The dequeuer traces nothing: the enqueuer's spans (and its traceparent) are what these tests look at.
    deq = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(admin), METRICS_HOST: '127.0.0.1' })
    started.push(deq)
    await waitReady(`http://127.0.0.1:${admin}`)
  })

  after(async () => {
    for (const p of started) {
      p.kill('SIGKILL')
      await p.exited
    }
    for (const r of receivers) await r.close()
    await echo?.close()
    await broker.deleteService(service)
    await broker.close()
  })

  async function enqueuer (env: Record<string, string>): Promise<{ base: string, p: RelayProcess }> {
    const port = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false', ...env })
    started.push(p)
    const base = `http://127.0.0.1:${port}`
    await waitReady(base)
    return { base, p }
  }

  async function receiver (mode?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
    const r = await startReceiver(mode)
    receivers.push(r)
    return r
  }

  /** n requests, 8 at a time; every one must be answered 200 by the service, each within `maxMs`. */
  async function load (base: string, n: number, maxMs: number, headers: () => Record<string, string> = () => ({})): Promise<void> {
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < n) {
        next++
        const t0 = performance.now()
        const res = await fetch(`${base}/${service}/x`, { headers: headers() })
        await res.arrayBuffer()
        const ms = performance.now() - t0
        assert.equal(res.status, 200)
        assert.ok(ms < maxMs, `a request took ${ms.toFixed(0)} ms`)
      }
    }
    await Promise.all(Array.from({ length: 8 }, worker))
  }

  async function dropped (base: string, reason: string): Promise<number> {
    const text = await (await fetch(`${base}/metrics`)).text()
    const m = new RegExp(`^relayq_tracing_spans_dropped_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)
    return m === null ? 0 : Number(m[1])
  }

  it('a collector answering 500: every request answered, the spans counted as dropped', async () => {
    const r = await receiver({ kind: 'status', status: 500 })
    const { base } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url })
    await load(base, 60, 3000)
    await waitFor(async () => await dropped(base, 'export_failed') > 0, { timeoutMs: 20000, what: 'export_failed drops counted' })
    assert.ok(r.requests() > 0, 'the exporter did try')
  })

  it('an unreachable collector: every request answered, the spans counted as dropped', async () => {
    const { base } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}`, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '1000' })
    await load(base, 60, 3000)
    await waitFor(async () => await dropped(base, 'export_failed') > 0, { timeoutMs: 20000, what: 'export_failed drops counted' })
  })

  it('a collector that stalls: requests do not wait for it; past the queue bound spans are dropped, not held', async () => {
    const r = await receiver({ kind: 'stall', ms: 60_000 })
    const { base } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '30000', OTEL_BSP_MAX_QUEUE_SIZE: '20' })
    await load(base, 200, 3000)
    // 200 requests make 600 spans; at most 20 may wait for the stalled collector.
    await waitFor(async () => await dropped(base, 'queue_full') >= 500, { timeoutMs: 20000, what: 'queue_full drops counted' })
  })

  it('always_off: no span is exported, the caller\'s trace id still reaches the service', async () => {
    const r = await receiver()
    const { base, p } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_TRACES_SAMPLER: 'always_off' })
    const traceId = hex(16)
    await load(base, 10, 3000, () => ({ traceparent: `00-${traceId}-${hex(8)}-01` }))
    assert.match(String(echo.received.at(-1)!.headers.traceparent), new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`))
    // A clean stop flushes whatever was queued: nothing.
    p.kill('SIGTERM')
    assert.equal((await p.exited).code, 0)
    assert.equal(r.spans.length, 0)
  })

  it('traceidratio 0.5: about half of the requests are traced', async () => {
    const r = await receiver()
    const { base, p } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' })
    await load(base, 60, 3000)
    p.kill('SIGTERM')
    assert.equal((await p.exited).code, 0)
    const traced = r.spans.filter((s) => s.kind === KIND.server).length
    // Binomial(60, 0.5): outside 10..50 has a probability below 1e-7.
    assert.ok(traced >= 10 && traced <= 50, `${traced} of 60 requests traced`)
  })

  it('a dequeuer at ratio 0.5, messages from another publisher without a traceparent: about half are traced, as new requests', async () => {
    const r = await receiver()
    const own = uniqueService('trexp-root')
    const admin = await freePort()
    const d = spawnRelay({
      RELAYQ_MODE: 'dequeuer', SERVICE_NAME: own, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(admin), METRICS_HOST: '127.0.0.1',
      OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5',
    })
    started.push(d)
    try {
      await waitReady(`http://127.0.0.1:${admin}`)
      const tag = randomBytes(4).toString('hex')
      for (let i = 0; i < 60; i++) await broker.publish(`${own}_requests`, Buffer.from('x'), { correlationId: `${tag}-${i}`, headers: { 'x-http-method': 'POST', 'x-http-path': `/root/${tag}/${i}` } })
      const calls = await waitFor(() => { const c = echo.received.filter((q) => q.url.includes(`/root/${tag}/`)); return c.length === 60 ? c : undefined }, { timeoutMs: 20000, what: 'the 60 calls' })
      d.kill('SIGTERM')
      assert.equal((await d.exited).code, 0)
      const consumers = r.spans.filter((s) => s.kind === KIND.consumer)
      // Binomial(60, 0.5): outside 10..50 has a probability below 1e-7.
      assert.ok(consumers.length >= 10 && consumers.length <= 50, `${consumers.length} of 60 messages traced`)
      for (const c of consumers) assert.equal(c.parentSpanId, '', 'each a root')
      // Every call carries a context: a traced message its CLIENT span's, one left out a new trace's with the
      // sampled flag off (so a parent-based sampler in the service leaves it out too).
      const flags = calls.map((q) => /^00-[\da-f]{32}-[\da-f]{16}-(0[01])$/.exec(String(q.headers.traceparent))?.[1])
      assert.equal(flags.filter((f) => f === '01').length, consumers.length)
      assert.equal(flags.filter((f) => f === '00').length, 60 - consumers.length)
    } finally {
      await broker.deleteService(own)
    }
  })

  it('OTEL_SDK_DISABLED=true wins over an endpoint: no spans, the caller\'s traceparent reaches the service unchanged', async () => {
    const r = await receiver()
    const { base, p } = await enqueuer({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' })
    const traceparent = `00-${hex(16)}-${hex(8)}-01`
    await load(base, 5, 3000, () => ({ traceparent, tracestate: 'a=b' }))
    const got = echo.received.at(-1)!
    assert.equal(got.headers.traceparent, traceparent)
    assert.equal(got.headers.tracestate, 'a=b')
    assert.equal(got.headers['x-relayq-sent-at'], undefined)
    p.kill('SIGTERM')
    assert.equal((await p.exited).code, 0)
    assert.equal(r.requests(), 0)
    assert.equal(p.logs().some((l) => l.msg === 'tracing on'), false)
  })
})
