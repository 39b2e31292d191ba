// `node --import tsx bench/tracing-cost.ts`: the CPU tracing adds per request,
// measured in this process with the real hooks (ServerTrace, CallTrace,
// DequeuerTracing), the real spans, batch processor and OTLP/protobuf exporter sending
// to a sink in another process. CPU time, not req/s: on a shared machine the
// throughput of a full run moves by 2-5x with the neighbours' load, while the
// CPU a loop of hooks burns does not. Divided by relayq's CPU per request
// (enqueuer + dequeuer, from `npm run bench`) it bounds the req/s lost when
// relayq is CPU-bound.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Delivery } from '../src/dequeuer/consumer'
import type { Prepared } from '../src/dequeuer/prepare'
import { createLogger } from '../src/log'
import { createTracingMetrics } from '../src/metrics/tracing'
import { DequeuerTracing } from '../src/tracing/dequeuer'
import { traceRequest } from '../src/tracing/enqueuer'
import { createTracing, type Tracing } from '../src/tracing/tracing'
import type { SamplerName } from '../src/config/types'

const REQUESTS = Number(process.env.COST_REQUESTS ?? 20000)
const REPEATS = Number(process.env.COST_REPEATS ?? 5)

// Callers' traceparents with random trace ids (the ratio sampler decides on the id), made once.
const PARENTS = Array.from({ length: 4096 }, () => `00-${randomBytes(16).toString('hex')}-00f067aa0ba902b7-01`)

/**
 * One request's hooks, both sides, as the request path calls them. The
 * objects the request path has anyway (the request, the delivery, the
 * forwarded headers) are built whether tracing is on or not, so only the
 * hooks' own work differs between the modes.
 */
function oneRequest (t: Tracing | null, deq: DequeuerTracing | null, i: number): void {
  const headers: Record<string, string> = { 'content-type': 'text/plain' }
  const req = { method: 'POST', url: '/orders/items?x=1', headers: { traceparent: PARENTS[i % PARENTS.length] }, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
  const res = new EventEmitter() as unknown as ServerResponse & { statusCode: number }
  res.statusCode = 200
  const server = t === null ? null : traceRequest(t, req, res)
  const call = server === null ? null : server.send({ service: 'orders', queue: 'orders_requests', correlationId: 'c', messageId: 'c', bodySize: 256, jobId: undefined }, headers)
  call?.confirmed()
  const d = { msg: { content: BODY, fields: { deliveryTag: i, routingKey: 'orders_requests' }, properties: { headers, correlationId: 'c', messageId: 'c', timestamp: Math.floor(Date.now() / 1000) } } } as unknown as Delivery
  const fwdHeaders: Record<string, string> = { ...headers }
  const prepared = { d, attempt: 1, forward: { method: 'POST', path: '/items?x=1', headers: fwdHeaders } } as unknown as Prepared
  const result = { kind: 'response' as const, status: 200, rawHeaders: [], body: EMPTY }
  if (deq !== null) {
    deq.received(d)
    const span = deq.calling(prepared)
    if (span !== null) deq.called(span, result)
    void deq.replying(d, 'amq.rabbitmq.reply-to.x', () => Promise.resolve())
    deq.settled(d, { kind: 'reply', result }, true)
  }
  call?.replied(undefined)
  call?.ended()
  ;(res as unknown as EventEmitter).emit('close')
}

const BODY = Buffer.alloc(256)
const EMPTY = Buffer.alloc(0)

async function cpuPerRequest (sampler: SamplerName | null, ratio: number, url: string): Promise<number> {
  const logger = createLogger('silent')
  const t = sampler === null
    ? null
    : createTracing({ url, protocol: 'http/protobuf', headers: {}, serviceName: 'bench', resource: {}, sampler, ratio, maxQueueSize: 1_000_000, exportTimeoutMs: 10000 }, 'bench', createTracingMetrics(null), logger)
  const deq = t === null ? null : new DequeuerTracing(t, 'orders_requests', new URL('http://127.0.0.1:8080'))
  let best = Infinity
  for (let r = 0; r < REPEATS; r++) {
    const before = process.cpuUsage()
    // The export of these spans is part of their cost (it runs on this thread): flushed about every 900 spans
    // (two batches, since a flush sends its batches at once and the exporter takes two at a time), so about every
    // 150 requests at 100% and every 15,000 at 1%, as the batch processor would, not after a fixed request count:
    // a flush of a near-empty batch is an HTTP request that a sampled-out request never causes.
    const flushEvery = Math.max(150, Math.round(150 / (sampler === 'traceidratio' ? ratio : 1)))
    for (let i = 0; i < REQUESTS; i++) {
      oneRequest(t, deq, i)
      if (i % flushEvery === flushEvery - 1) await flush(t)
    }
    await flush(t)
    const used = process.cpuUsage(before)
    best = Math.min(best, (used.user + used.system) / REQUESTS)
  }
  await t?.shutdown()
  return best
}

async function flush (t: Tracing | null): Promise<void> {
  await t?.flush()
}

function startSink (): Promise<{ url: string, child: ChildProcess }> {
  const code = "require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end()) }).listen(0, '127.0.0.1', function () { console.log(this.address().port) })"
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve) => child.stdout.once('data', (port: Buffer) => resolve({ url: `http://127.0.0.1:${port.toString().trim()}/v1/traces`, child })))
}

async function main (): Promise<void> {
  const sink = await startSink()
  try {
    const only = process.env.COST_ONLY
    const off = only === undefined || only === 'off' ? await cpuPerRequest(null, 1, sink.url) : NaN
    const all = only === undefined || only === '100' ? await cpuPerRequest('parentbased_always_on', 1, sink.url) : NaN
    // The ratio decides at the root, whatever the caller's sampled flag: 1% of the requests are traced.
    const onePct = only === undefined || only === '1' ? await cpuPerRequest('traceidratio', 0.01, sink.url) : NaN
    console.log(`CPU µs per request (best of ${REPEATS} x ${REQUESTS}), both sides' hooks: off ${off.toFixed(2)}, 100% ${all.toFixed(1)}, 1% ${onePct.toFixed(1)}`)
  } finally {
    sink.child.kill()
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1) })
