// Tracing end to end, as an operator runs it: the real bundle as enqueuer and
// dequeuer, the real broker, a real service, and an OTLP/HTTP receiver run by
// the test (the enqueuer exports JSON, the dequeuer protobuf). One request's
// spans must form one tree in one trace, and the service's traceparent must be
// the CLIENT span's context.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, echoJson, type Echo } from '../helpers/echo'
import { KIND, startReceiver, type ReceivedSpan, type Receiver } from '../helpers/otlp-receiver'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { waitFor } from '../helpers/wait'

const hex = (bytes: number): string => randomBytes(bytes).toString('hex')

function inTrace (r: Receiver, traceId: string): ReceivedSpan[] {
  return r.spans.filter((s) => s.traceId === traceId)
}

function only (spans: ReceivedSpan[], what: string, pick: (s: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(pick)
  assert.equal(found.length, 1, `one ${what} span, got ${found.length}: ${JSON.stringify(spans.map((s) => [s.name, s.kind, s.spanId, s.parentSpanId]))}`)
  return found[0]!
}

describe('tracing through enqueuer, broker and dequeuer', () => {
  let broker: TestBroker
  let receiver: Receiver
  let echo: Echo
  let enq: RelayProcess
  let deq: RelayProcess
  let base = ''
  const service = uniqueService('trace')
  const results = `t-results-${hex(4)}`
  const flaky = new Set<string>()

  before(async () => {
    broker = await connectBroker()
    receiver = await startReceiver()
    echo = await startEcho((req, res) => {
      // /fail always 503; /flaky/<id> 503 the first time, then as /ok.
      if (req.url.startsWith('/fail')) return void res.writeHead(503).end('no')
      if (req.url.startsWith('/flaky/') && !flaky.has(req.url)) {
        flaky.add(req.url)
        return void res.writeHead(503).end('not yet')
      }
      return echoJson(req, res)
    })
    const deqAdmin = await freePort()
    deq = spawnRelay({
      RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(deqAdmin), METRICS_HOST: '127.0.0.1',
      DEQUEUER_RETRY_STATUSES: '503', DEQUEUER_RETRY_DELAY_MS: '100', DEQUEUER_MAX_ATTEMPTS: '2', CIRCUIT_BREAKER_ENABLED: 'false',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
    })
    await waitReady(`http://127.0.0.1:${deqAdmin}`)
    const port = await freePort()
    enq = spawnRelay({
      RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ASYNC_RESULTS_QUEUE: results,
      OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'edge', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test', LOG_LEVEL: 'debug',
    })
    base = `http://127.0.0.1:${port}`
    await waitReady(base)
  })

  after(async () => {
    for (const p of [enq, deq]) {
      p?.kill('SIGKILL')
      await p?.exited
    }
    await echo?.close()
    await receiver?.close()
    await broker.deleteService(service)
    const ch = await broker.channel()
    await ch.deleteQueue(results).catch(() => {})
    await broker.close()
  })

  it('one request is one trace: SERVER, send, wait reply, process, CLIENT and the reply send, parented in that order', async () => {
    const traceId = hex(16)
    const callerSpan = hex(8)
    const body = 'hello tracing'
    const res = await fetch(`${base}/${service}/ok/items?x=1`, {
      method: 'POST', body, headers: { traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: 'congo=t61rcWkgMzE', 'x-correlation-id': `client-${traceId}` },
    })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    const spans = await waitFor(() => { const s = inTrace(receiver, traceId); return s.length >= 6 ? s : null }, { timeoutMs: 20000, what: 'six spans in the trace' })

    const server = only(spans, 'SERVER', (s) => s.kind === KIND.server)
    assert.equal(server.parentSpanId, callerSpan)
    assert.equal(server.name, `POST /${service}/*`)
    assert.equal(server.serviceName, 'edge')
    assert.equal(server.encoding, 'json')
    assert.equal(server.attributes['http.request.method'], 'POST')
    assert.equal(server.attributes['http.response.status_code'], 200)
    assert.equal(server.attributes['url.path'], `/${service}/ok/items`)
    assert.notEqual(server.status, 2)

    const send = only(spans, 'PRODUCER send', (s) => s.kind === KIND.producer && s.name === `send ${service}_requests`)
    assert.equal(send.parentSpanId, server.spanId)
    assert.equal(send.attributes['messaging.system'], 'rabbitmq')
    assert.equal(send.attributes['messaging.operation.type'], 'send')
    assert.equal(send.attributes['messaging.destination.name'], `${service}_requests`)
    assert.equal(send.attributes['messaging.rabbitmq.destination.routing_key'], `${service}_requests`)
    assert.equal(send.attributes['messaging.message.body.size'], Buffer.byteLength(body))
    assert.equal(typeof send.attributes['messaging.message.id'], 'string')
    const conversation = send.attributes['messaging.message.conversation_id']
    assert.equal(typeof conversation, 'string')

    const wait = only(spans, 'wait reply', (s) => s.kind === KIND.internal)
    assert.equal(wait.name, 'wait reply')
    assert.equal(wait.parentSpanId, server.spanId)
    assert.ok(wait.startNs >= send.startNs)

    const proc = only(spans, 'CONSUMER process', (s) => s.kind === KIND.consumer)
    assert.equal(proc.name, `process ${service}_requests`)
    assert.equal(proc.parentSpanId, send.spanId)
    assert.equal(proc.serviceName, 'relayq-dequeuer')
    assert.equal(proc.encoding, 'protobuf')
    assert.equal(proc.attributes['messaging.operation.type'], 'process')
    assert.equal(proc.attributes['messaging.message.conversation_id'], conversation)
    assert.equal(proc.attributes['relayq.delivery.attempt'], 1)
    assert.equal(proc.attributes['relayq.outcome'], 'replied')
    const queueWait = proc.attributes['relayq.queue.wait_ms']
    assert.ok(typeof queueWait === 'number' && queueWait >= 0 && queueWait < 10000, `queue wait ${String(queueWait)}`)

    const client = only(spans, 'CLIENT', (s) => s.kind === KIND.client)
    assert.equal(client.parentSpanId, proc.spanId)
    assert.equal(client.name, 'POST')
    assert.equal(client.attributes['http.response.status_code'], 200)
    const got = echo.received.at(-1)!
    assert.equal(got.headers.traceparent, `00-${traceId}-${client.spanId}-01`, 'the service receives the CLIENT span as its parent')
    assert.equal(got.headers.tracestate, 'congo=t61rcWkgMzE', 'the caller\'s tracestate travels on')
    assert.equal(got.headers['x-relayq-sent-at'], undefined, 'relayq\'s own header is not forwarded')

    const reply = only(spans, 'reply send', (s) => s.kind === KIND.producer && s.parentSpanId === proc.spanId)
    assert.equal(reply.name, 'send (temporary)')
    assert.equal(reply.attributes['messaging.destination.temporary'], true)

    const line = enq.logs().find((l) => l.clientId === `client-${traceId}`)
    assert.equal(line?.trace_id, traceId, 'the enqueuer\'s line about the request carries its trace id')
    assert.equal(line?.span_id, server.spanId)
  })

  it('a retry through the delay queue stays in the trace: the first process span retried (error), the second replied', async () => {
    const traceId = hex(16)
    const res = await fetch(`${base}/${service}/flaky/${hex(4)}`, { headers: { traceparent: `00-${traceId}-${hex(8)}-01` } })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    // Each process exports on its own schedule: wait for the enqueuer's send span too, not only the dequeuer's.
    const isSend = (s: ReceivedSpan): boolean => s.kind === KIND.producer && s.name.startsWith('send t-')
    const procs = await waitFor(() => {
      const spans = inTrace(receiver, traceId)
      const p = spans.filter((s) => s.kind === KIND.consumer)
      return p.length >= 2 && spans.some(isSend) ? p : null
    }, { timeoutMs: 20000, what: 'two process spans and the send span' })
    const send = only(inTrace(receiver, traceId), 'send', isSend)
    const [first, second] = procs.sort((a, b) => Number(a.startNs - b.startNs))
    assert.equal(first!.attributes['relayq.outcome'], 'retried')
    assert.equal(first!.status, 2)
    assert.equal(first!.attributes['error.type'], 'RQ_ERR_DOWNSTREAM_STATUS')
    assert.equal(second!.attributes['relayq.outcome'], 'replied')
    assert.equal(second!.attributes['relayq.delivery.attempt'], 2)
    assert.notEqual(second!.status, 2)
    for (const p of procs) assert.equal(p.parentSpanId, send.spanId)
  })

  it('a dead-lettered request: the process span says why, the SERVER span carries the RQ_ERR code, the log line the trace id', async () => {
    const traceId = hex(16)
    const res = await fetch(`${base}/${service}/fail`, { headers: { traceparent: `00-${traceId}-${hex(8)}-01` } })
    const code = res.headers.get('x-relayq-error')
    await res.arrayBuffer()
    assert.match(code ?? '', /^RQ_ERR_/)
    const spans = await waitFor(() => {
      const s = inTrace(receiver, traceId)
      return s.some((x) => x.kind === KIND.server) && s.some((x) => x.attributes['relayq.outcome'] === 'dead_lettered') ? s : null
    }, { timeoutMs: 20000, what: 'the dead-letter spans' })
    const dead = only(spans, 'dead-lettered process', (s) => s.attributes['relayq.outcome'] === 'dead_lettered')
    assert.equal(dead.status, 2)
    assert.equal(dead.attributes['relayq.dead_letter.reason'], 'max_attempts')
    assert.equal(dead.attributes['error.type'], 'RQ_ERR_DOWNSTREAM_STATUS')
    const server = only(spans, 'SERVER', (s) => s.kind === KIND.server)
    assert.equal(server.status, 2)
    assert.equal(server.attributes['error.type'], code)
    const line = await waitFor(() => deq.logs().find((l) => l.msg === 'message dead-lettered' && l.trace_id === traceId), { what: 'the dead-letter log line with its trace id' })
    assert.equal(line.span_id, dead.spanId)
  })

  it('a message whose deadline passed, from another publisher\'s traceparent: the process span joins that trace as expired', async () => {
    const traceId = hex(16)
    const parent = hex(8)
    await broker.publish(`${service}_requests`, Buffer.from('late'), {
      correlationId: hex(8), headers: { 'x-http-method': 'GET', 'x-relayq-deadline': String(Date.now() - 1000), traceparent: `00-${traceId}-${parent}-01` },
    })
    const proc = await waitFor(() => inTrace(receiver, traceId).find((s) => s.kind === KIND.consumer), { timeoutMs: 20000, what: 'the expired process span' })
    assert.equal(proc.parentSpanId, parent)
    assert.equal(proc.attributes['relayq.outcome'], 'expired')
    assert.equal(proc.attributes['error.type'], 'RQ_ERR_DEADLINE_EXCEEDED')
    assert.equal(proc.status, 2)
  })

  it('a message another publisher sent without a traceparent (a ProxyMQ enqueuer): the process span starts the trace, the service gets its CLIENT span', async () => {
    const path = `/untraced/${hex(6)}`
    await broker.publish(`${service}_requests`, Buffer.from('plain'), { correlationId: hex(8), headers: { 'x-http-method': 'POST', 'x-http-path': path } })
    const got = await waitFor(() => echo.received.find((r) => r.url === path), { timeoutMs: 20000, what: 'the call to the service' })
    const traceparent = String(got.headers.traceparent)
    assert.match(traceparent, /^00-[\da-f]{32}-[\da-f]{16}-01$/, 'sampled (the dequeuer samples everything here)')
    const traceId = traceparent.slice(3, 35)
    const spans = await waitFor(() => { const s = inTrace(receiver, traceId); return s.length >= 2 ? s : undefined }, { timeoutMs: 20000, what: 'the process and CLIENT spans' })
    const proc = only(spans, 'process', (s) => s.kind === KIND.consumer)
    const client = only(spans, 'CLIENT', (s) => s.kind === KIND.client)
    assert.equal(proc.parentSpanId, '', 'a root')
    assert.equal(client.parentSpanId, proc.spanId)
    assert.equal(traceparent.slice(36, 52), client.spanId)
  })

  it('an async job is one trace: the 202, the publish, the processing and the reply to the results queue', async () => {
    const traceId = hex(16)
    const res = await fetch(`${base}/${service}/ok/job`, { method: 'POST', body: 'job', headers: { prefer: 'respond-async', traceparent: `00-${traceId}-${hex(8)}-01` } })
    assert.equal(res.status, 202)
    await res.arrayBuffer()
    // The enqueuer's spans (SERVER, send) and the dequeuer's (process, reply) arrive in exports of their own.
    const spans = await waitFor(() => {
      const s = inTrace(receiver, traceId)
      const has = (pick: (x: ReceivedSpan) => boolean): boolean => s.some(pick)
      return has((x) => x.name.startsWith(`send ${results}`)) && has((x) => x.kind === KIND.server) && has((x) => x.name === `send ${service}_requests`) && has((x) => x.kind === KIND.consumer) ? s : null
    }, { timeoutMs: 20000, what: 'the job\'s spans' })
    const server = only(spans, 'SERVER', (s) => s.kind === KIND.server)
    assert.equal(server.attributes['http.response.status_code'], 202)
    const send = only(spans, 'send', (s) => s.name === `send ${service}_requests`)
    assert.equal(typeof send.attributes['relayq.job.id'], 'string')
    assert.equal(spans.filter((s) => s.name === 'wait reply').length, 0, 'nobody waits for a job\'s reply')
    const proc = only(spans, 'process', (s) => s.kind === KIND.consumer)
    assert.equal(proc.parentSpanId, send.spanId)
    // The reply goes to this enqueuer's own results queue (`{ASYNC_RESULTS_QUEUE}.{instance}` with the in-memory store).
    assert.equal(only(spans, 'reply', (s) => s.name.startsWith(`send ${results}`)).parentSpanId, proc.spanId)
  })
})
