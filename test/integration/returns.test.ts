// Copies published into a queue that no longer exists do not vanish: every
// publish the dequeuer makes to a named queue is mandatory, a returned copy
// to the service's own queues is published again after declaring them, and a
// reply no queue takes sends the original back (counted, so it ends in the
// dead-letter queue, not in a loop).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('returned messages', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []
  const running: Array<TestDequeuer | TestEnqueuer> = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
  })

  after(async () => {
    for (const r of running) await r.close()
    await echo?.close()
    for (const s of services) await broker.deleteService(s)
    await broker?.close()
  })

  async function pair (env: Record<string, string>): Promise<{ service: string, enq: TestEnqueuer, deq: TestDequeuer }> {
    const service = uniqueService('ret')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url, { DEQUEUER_RETRY_DELAY_MS: '200', DEQUEUER_RETRY_STATUSES: '503', CIRCUIT_BREAKER_ENABLED: 'false', ...env })
    running.push(deq)
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '10', ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false' })
    running.push(enq)
    return { service, enq, deq }
  }

  /** The service fails each path's first call with 503, then answers 200. */
  function failFirst (): void {
    const seen = new Set<string>()
    echo.behave((req, res) => {
      const first = !seen.has(req.url)
      seen.add(req.url)
      res.writeHead(first ? 503 : 200, { 'content-type': 'text/plain' })
      res.end(first ? 'busy' : 'ok')
    })
  }

  it('the retry queue deleted: the retry copy comes back, the queue is declared again, the retry runs and the client gets 200', async () => {
    const { service, enq } = await pair({ DEQUEUER_MAX_ATTEMPTS: '3' })
    failFirst()
    const retryQueue = `${service}_requests.retry.200`
    const ch = await broker.channel()
    await ch.deleteQueue(retryQueue)
    await ch.close()
    const res = await send(`${enq.url}/${service}/retry-once`)
    assert.equal(res.status, 200, res.body.toString())
    assert.equal(echo.received.filter((r) => r.url.endsWith('/retry-once')).length, 2)
    assert.equal(await broker.exists(retryQueue), true)
  })

  it('the dead-letter queue deleted: the dead letter comes back, the queue is declared again and holds it', async () => {
    const { service, enq } = await pair({ DEQUEUER_MAX_ATTEMPTS: '1' })
    failFirst()
    const dlq = `${service}_requests.dlq`
    const ch = await broker.channel()
    await ch.deleteQueue(dlq)
    await ch.close()
    const res = await send(`${enq.url}/${service}/dead`)
    assert.equal(res.status, 502, res.body.toString())
    const letters = await waitFor(async () => (await broker.exists(dlq)) && (await broker.depth(dlq)) === 1, { what: 'the dead letter in the re-declared DLQ' })
    assert.ok(letters)
  })

  it('the DLQ depth poll reports a missing dead-letter queue and declares it again', async () => {
    const { service, deq } = await pair({ DLQ_POLL_INTERVAL_MS: '200' })
    const dlq = `${service}_requests.dlq`
    const ch = await broker.channel()
    await ch.deleteQueue(dlq)
    await ch.close()
    await waitFor(() => deq.logs.lines.some((l) => l.msg === 'the dead-letter queue is missing; declaring it again' && l.queue === dlq), { what: 'the missing DLQ reported' })
    await waitFor(() => broker.exists(dlq), { what: 'the DLQ declared again' })
  })

  it('a reply to a durable reply queue that does not exist: the original goes back, is counted, and ends in the dead-letter queue', async () => {
    const { service } = await pair({ DEQUEUER_MAX_ATTEMPTS: '2' })
    echo.behave((_req, res) => { res.writeHead(200); res.end('done') })
    await broker.publish(`${service}_requests`, Buffer.from('job'), {
      headers: { 'x-http-method': 'POST', 'x-http-path': '/no-results-queue' },
      replyTo: `${service}_results_missing`,
      correlationId: 'job-1',
    })
    const dlq = `${service}_requests.dlq`
    await waitFor(async () => (await broker.depth(dlq)) === 1, { timeoutMs: 20000, what: 'the job in the DLQ' })
    const [letter] = await broker.peekAll(dlq)
    assert.equal(String(letter!.properties.headers?.['x-relayq-dead-letter-reason']), 'redelivery_limit')
    const calls = echo.received.filter((r) => r.url.endsWith('/no-results-queue')).length
    assert.ok(calls >= 1 && calls <= 2, `${calls} calls, bounded by DEQUEUER_MAX_ATTEMPTS`)
  })
})
