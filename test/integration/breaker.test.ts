// Circuit breakers and health gating: a failing service makes its dequeuer
// stop taking work (so healthy replicas serve the queue), the enqueuer fails
// fast for a service that does not answer, and an unhealthy service is given
// nothing.
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { Load, ServiceLedger } from '../helpers/ledger'
import { startTestDequeuer, startTestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

describe('breakers and health gating', () => {
  let broker: TestBroker
  const services: string[] = []
  const cleanup: Array<() => Promise<void>> = []

  before(async () => { broker = await connectBroker() })
  afterEach(async () => { while (cleanup.length > 0) await cleanup.pop()!() })
  after(async () => {
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  async function echoWith (ledger: ServiceLedger, fail: () => boolean): Promise<Echo> {
    const e = await startEcho(ledger.behaviour((req, res) => {
      if (fail()) {
        res.writeHead(503)
        res.end('down')
        return
      }
      res.writeHead(200)
      res.end(req.body)
    }))
    cleanup.push(() => e.close())
    return e
  }

  it('an open breaker cancels the consumer; a healthy replica serves everything; the first resumes after recovery', async () => {
    const service = uniqueService('brk')
    services.push(service)
    const queue = `${service}_requests`
    const ledger = new ServiceLedger()
    let failing = false
    const bad = await echoWith(ledger, () => failing)
    const good = await echoWith(ledger, () => false)
    const breakerEnv = { CIRCUIT_BREAKER_VOLUME: '10', CIRCUIT_BREAKER_ERROR_PERCENT: '50', CIRCUIT_BREAKER_RESET_MS: '1000', DEQUEUER_CONCURRENCY: '5' }
    const a = await startTestDequeuer(service, bad.url, breakerEnv)
    const b = await startTestDequeuer(service, good.url, breakerEnv)
    cleanup.push(() => a.close(), () => b.close())
    await Promise.all([a.consuming, b.consuming])
    const enq = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false' })
    cleanup.push(() => enq.close())
    const load = new Load(() => `${enq.url}/${service}/x`)
    const running = load.steady(100, 9000)
    await sleep(1000)
    const failedAt = Date.now()
    failing = true
    await waitFor(async () => (await broker.consumers(queue)) === 1, { timeoutMs: 5000, intervalMs: 20, what: 'the failing dequeuer to stop consuming' })
    const cancelledAfter = Date.now() - failedAt
    const badCallsAtOpen = bad.received.length
    await sleep(2500)
    assert.ok(bad.received.length - badCallsAtOpen <= 3, `the open dequeuer took ${bad.received.length - badCallsAtOpen} more calls (half-open probes only)`)
    const recoveredAt = Date.now()
    failing = false
    await waitFor(async () => (await broker.consumers(queue)) === 2 && (await send(`${a.adminUrl}/readyz`)).status === 200, { timeoutMs: 5000, intervalMs: 20, what: 'the first dequeuer to resume' })
    const resumedAfter = Date.now() - recoveredAt
    await running
    await load.close()
    console.log(`# breaker: consumer cancelled ${cancelledAfter} ms after the service began failing; resumed ${resumedAfter} ms after it recovered`)
    const acc = load.account(ledger)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    const answeredAfterOpen = load.outcomes.filter((o) => o.sentAt > failedAt + cancelledAfter + 200 && o.sentAt < recoveredAt)
    assert.ok(answeredAfterOpen.length > 100)
    // Only the half-open probes (one real message each, without a health URL) may meet the failing service.
    const probes = bad.received.length - badCallsAtOpen
    const notOk = answeredAfterOpen.filter((o) => o.status !== 200)
    assert.ok(notOk.length <= probes, `${notOk.length} non-200 answers while open, ${probes} probes`)
    for (const o of notOk) assert.equal(o.status, 503)
    assert.equal(await broker.depth(`${service}_requests.dlq`), 0, 'nothing dead-lettered because of the open breaker')
    assert.ok(cancelledAfter < 3000)
    const metrics = (await send(`${a.adminUrl}/metrics`)).body.toString()
    assert.match(metrics, /dequeuer_circuit_breaker_transitions_total\{service="[^"]+",state="open"\} [1-9]/)
    assert.match(metrics, /dequeuer_circuit_breaker_state\{service="[^"]+"\} 0/)
  })

  it('the enqueuer fails fast for a service whose replies keep timing out, and lets it back in after', async () => {
    const service = uniqueService('ebrk')
    services.push(service)
    let hung = true
    const e = await startEcho((req, res) => {
      if (hung) return // never answers
      res.writeHead(200)
      res.end(req.body)
    })
    cleanup.push(() => e.close())
    const deq = await startTestDequeuer(service, e.url, { CIRCUIT_BREAKER_ENABLED: 'false', DOWNSTREAM_TIMEOUT: '30' })
    cleanup.push(() => deq.close())
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '0.4', ENQUEUER_BREAKER_THRESHOLD: '3', ENQUEUER_BREAKER_COOLDOWN_MS: '1000' })
    cleanup.push(() => enq.close())
    for (let i = 0; i < 3; i++) assert.equal((await send(`${enq.url}/${service}/x`)).status, 504)
    const fast = await send(`${enq.url}/${service}/x`)
    assert.equal(fast.status, 503)
    assert.equal(fast.headers['x-relayq-error'], 'RQ_ERR_CIRCUIT_OPEN')
    assert.ok(Number(fast.headers['retry-after']) >= 1)
    // Refused without waiting: the reply timeout (0.4 s) is the bound, not a busy machine's latency.
    assert.ok(fast.ms < 400, `answered in ${fast.ms} ms`)
    hung = false
    await sleep(1100)
    await waitFor(async () => (await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'ok' })).status === 200, { timeoutMs: 5000, what: 'requests to flow again' })
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(metrics, /enqueuer_circuit_breaker_transitions_total\{service="[^"]+",state="open"\} 1/)
  })

  it('a service that starts unhealthy receives nothing until it is healthy; unhealthy mid-load stops delivery', async () => {
    const service = uniqueService('health')
    services.push(service)
    const queue = `${service}_requests`
    let healthy = false
    const ledger = new ServiceLedger()
    const e = await startEcho(ledger.behaviour((req, res) => {
      if (req.url === '/health') {
        res.writeHead(healthy ? 200 : 503)
        res.end()
        return
      }
      res.writeHead(200)
      res.end(req.body)
    }))
    cleanup.push(() => e.close())
    const deq = await startTestDequeuer(service, e.url, { HEALTH_CHECK_URL: `${e.url}/health`, HEALTH_CHECK_INTERVAL: '0.2', HEALTH_CHECK_TIMEOUT: '1' })
    cleanup.push(() => deq.close())
    await waitFor(() => broker.exists(queue))
    await broker.publish(queue, Buffer.from('early'), { headers: { 'x-http-method': 'POST', 'x-http-path': '/work' } })
    await sleep(800)
    assert.equal(await broker.consumers(queue), 0)
    assert.equal(e.received.filter((r) => r.url !== '/health').length, 0, 'nothing delivered while unhealthy')
    assert.equal((await send(`${deq.adminUrl}/readyz`)).status, 503)
    assert.equal((await send(`${deq.adminUrl}/livez`)).status, 200)
    healthy = true
    await deq.consuming
    await waitFor(() => e.received.some((r) => r.url === '/work'), { what: 'the early message to be served' })
    const metrics = (await send(`${deq.adminUrl}/metrics`)).body.toString()
    assert.match(metrics, /dequeuer_ready_time_seconds\{service="[^"]+"\} 1\d{9}/)
    assert.match(metrics, /dequeuer_health_check_success_total\{service="[^"]+"\} [1-9]/)
    healthy = false
    await waitFor(async () => (await broker.consumers(queue)) === 0, { timeoutMs: 3000, what: 'consumption to stop' })
    const before = e.received.filter((r) => r.url !== '/health').length
    await broker.publish(queue, Buffer.from('late'), { headers: { 'x-http-method': 'POST', 'x-http-path': '/work' } })
    await sleep(600)
    assert.equal(e.received.filter((r) => r.url !== '/health').length, before)
    healthy = true
    await waitFor(() => e.received.filter((r) => r.url !== '/health').length === before + 1, { what: 'resumption' })
  })
})
