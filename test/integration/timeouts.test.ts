// Every timeout fires at its configured value and gives its documented answer;
// the caller's deadline travels with the message and bounds the service call.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, afterEach, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('timeouts', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
  })
  afterEach(async () => { while (cleanup.length > 0) await cleanup.pop()!() })
  after(async () => {
    await echo.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  async function pair (deqEnv: Record<string, string>, enqEnv: Record<string, string> = {}): Promise<{ service: string, enq: TestEnqueuer, deq: TestDequeuer }> {
    const service = uniqueService('to')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url, { CIRCUIT_BREAKER_ENABLED: 'false', DEQUEUER_MAX_ATTEMPTS: '1', ...deqEnv })
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false', ...enqEnv })
    cleanup.push(() => deq.close(), () => enq.close())
    return { service, enq, deq }
  }

  it('DOWNSTREAM_TIMEOUT: a slow service gets the client a 504 at the configured time', async () => {
    echo.behave((_req, res) => { setTimeout(() => { res.writeHead(200); res.end('late') }, 3000) })
    const { service, enq } = await pair({ DOWNSTREAM_TIMEOUT: '0.8' })
    const res = await send(`${enq.url}/${service}/slow`)
    assert.equal(res.status, 504)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    assert.ok(res.ms >= 750 && res.ms < 1800, `answered after ${res.ms} ms`)
  })

  it('the service call gets only the time the caller has left', async () => {
    let closedAfter = -1
    echo.behave((req, res) => {
      const t0 = Date.now()
      res.on('close', () => { closedAfter = Date.now() - t0 })
      setTimeout(() => { if (!res.destroyed) { res.writeHead(200); res.end('late') } }, 3000)
      void req
    })
    const { service, enq } = await pair({ DOWNSTREAM_TIMEOUT: '60' })
    const res = await send(`${enq.url}/${service}/slow`, { headers: { 'x-relayq-timeout-ms': '700' } })
    assert.equal(res.status, 504)
    await waitFor(() => closedAfter >= 0, { what: 'the service call to be abandoned' })
    assert.ok(closedAfter < 1300, `the dequeuer gave up on the service after ${closedAfter} ms`)
  })

  it('a message whose deadline passed while queued is never forwarded', async () => {
    const seen: string[] = []
    echo.behave((req, res) => {
      seen.push(req.body.toString())
      setTimeout(() => { res.writeHead(200); res.end('done') }, req.body.toString() === 'first' ? 1500 : 0)
    })
    const { service, enq } = await pair({ DEQUEUER_CONCURRENCY: '1', DOWNSTREAM_TIMEOUT: '10' })
    const first = send(`${enq.url}/${service}/a`, { method: 'POST', body: 'first' })
    await waitFor(() => seen.length === 1, { what: 'the first request to occupy the dequeuer' })
    const second = await send(`${enq.url}/${service}/b`, { method: 'POST', body: 'second', headers: { 'x-relayq-timeout-ms': '400' } })
    assert.equal(second.status, 504)
    assert.equal((await first).status, 200)
    // The broker expired it in the queue (or relayq refused it after): either way it sits in the DLQ.
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === 1 ? m : null })
    assert.equal(dlq[0]!.content.toString(), 'second')
    assert.deepEqual(seen, ['first'])
  })

  it('MESSAGE_TTL_MS puts a queue TTL on the request queue', async () => {
    const service = uniqueService('ttl')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url, { MESSAGE_TTL_MS: '300', HEALTH_CHECK_URL: 'http://127.0.0.1:9/never', HEALTH_CHECK_INTERVAL: '60' })
    cleanup.push(() => deq.close())
    await waitFor(() => broker.exists(`${service}_requests`), { what: 'the queue to be declared' })
    // The dequeuer waits for a healthy service, so nothing consumes: only the TTL can move this message.
    await broker.publish(`${service}_requests`, Buffer.from('old'), {})
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === 1 ? m : null }, { timeoutMs: 5000 })
    assert.equal(dlq[0]!.properties.headers?.['x-first-death-reason'], 'expired')
  })

  it('HEALTH_CHECK_TIMEOUT: a hanging health URL counts as unhealthy', async () => {
    const sockets = new Set<net.Socket>()
    const hang = net.createServer((s) => { sockets.add(s) }) // accepts, never answers
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve))
    const port = (hang.address() as net.AddressInfo).port
    cleanup.push(() => new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      hang.close(() => resolve())
    }))
    const service = uniqueService('hc')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url, { HEALTH_CHECK_URL: `http://127.0.0.1:${port}/health`, HEALTH_CHECK_TIMEOUT: '0.3', HEALTH_CHECK_INTERVAL: '0.2' })
    cleanup.push(() => deq.close())
    await waitFor(async () => /dequeuer_health_check_duration_seconds_count\{service="[^"]+",status_code="error"\} [1-9]/.test((await send(`${deq.adminUrl}/metrics`)).body.toString()), { what: 'a timed-out health check' })
    const ready = await send(`${deq.adminUrl}/readyz`)
    assert.equal(ready.status, 503)
    assert.match(ready.body.toString(), /unhealthy/)
  })

  it('the enqueuer answers 408 to a client that does not finish its headers in time', async () => {
    const { enq } = await pair({}, { ENQUEUER_HEADERS_TIMEOUT_MS: '500', ENQUEUER_BODY_TIMEOUT_MS: '1000' })
    const started = Date.now()
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(enq.port, '127.0.0.1', () => socket.write('GET /x/y HTTP/1.1\r\nhost: x\r\n'))
      let data = ''
      socket.on('data', (c) => { data += c.toString() })
      socket.on('close', () => resolve(data))
    })
    const ms = Date.now() - started
    assert.match(answer, /^HTTP\/1\.1 408/)
    assert.match(answer, /RQ_ERR_REQUEST_TIMEOUT/)
    assert.ok(ms < 500 + 1000, `closed after ${ms} ms`)
  })
})
