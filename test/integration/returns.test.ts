// Copies published into a queue that no longer exists do not vanish: every
// publish the dequeuer makes to a named queue is mandatory, a returned copy
// to the service's own queues is published again after declaring them, and a
// reply no queue takes (after a bounded wait for the queue) sends the original
// to the dead-letter queue: calling the service again would not bring it back.
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

  it('a reply to a durable reply queue that does not exist: the service called once, the message dead-lettered as reply_unroutable', async () => {
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
    assert.equal(String(letter!.properties.headers?.['x-relayq-dead-letter-reason']), 'reply_unroutable')
    assert.equal(letter!.properties.replyTo, `${service}_results_missing`, 'a replay answers to the same queue')
    assert.equal(echo.received.filter((r) => r.url.endsWith('/no-results-queue')).length, 1)
    assert.equal(await broker.depth(`${service}_requests`), 0)
  })

  it('a flood of messages whose replyTo names no queue: each called once and dead-lettered, the requests behind it answered', async () => {
    // 8 in flight: at most 2 may wait for their reply's queue to appear; the rest go to the DLQ at once.
    const { service, enq } = await pair({ DEQUEUER_CONCURRENCY: '8', DEQUEUER_MAX_ATTEMPTS: '3' })
    echo.behave((_req, res) => { res.writeHead(200); res.end('done') })
    const hostile = 16
    for (let i = 0; i < hostile; i++) {
      await broker.publish(`${service}_requests`, Buffer.from('x'), {
        headers: { 'x-http-method': 'POST', 'x-http-path': `/hostile/${i}` },
        replyTo: `${service}_nobody_${i}`,
        correlationId: `hostile-${i}`,
      })
    }
    // Behind them in the queue. Before the bound, each hostile message held its slot 4.5 s an attempt, three
    // attempts, so these waited past their 10 s reply timeout.
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/legit/${i}`)))
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
    const dlq = `${service}_requests.dlq`
    await waitFor(async () => (await broker.depth(dlq)) === hostile, { timeoutMs: 30000, what: 'every hostile message in the DLQ' })
    const letters = await broker.peekAll(dlq)
    assert.deepEqual([...new Set(letters.map((l) => String(l.properties.headers?.['x-relayq-dead-letter-reason'])))], ['reply_unroutable'])
    for (let i = 0; i < hostile; i++) assert.equal(echo.received.filter((r) => r.url.endsWith(`/hostile/${i}`)).length, 1, `hostile ${i}: called once`)
  })
})
