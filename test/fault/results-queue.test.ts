// The results queue deleted while jobs are pending (issue 22, item 3): the
// enqueuer logged the consumer cancel and never declared the queue again, so
// every job stayed pending. Now it declares and consumes again, with backoff,
// and pending and new jobs complete. And a reply published while the queue is
// gone is tried again rather than sending the request round again.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('the results queue deleted under the enqueuer', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('resultsq')
  const running: TestEnqueuer[] = []
  const queues: string[] = []
  const held: Array<() => void> = []
  const executions = new Map<string, number>()

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(async (req, res) => {
      const n = (executions.get(req.url) ?? 0) + 1
      executions.set(req.url, n)
      if (req.url.startsWith('/held') || (req.url.startsWith('/hold-first') && n === 1)) await new Promise<void>((resolve) => held.push(resolve))
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`ran ${req.url}`)
    })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    for (const r of held) r()
    for (const e of running) await e.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    const ch = await broker.channel()
    for (const q of queues) await ch.deleteQueue(q).catch(() => {})
    await ch.close().catch(() => {})
    await broker.close()
  })

  async function job (url: string, path: string): Promise<string> {
    const res = await send(`${url}/${service}${path}`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(res.status, 202, res.body.toString())
    return res.json<{ job_id: string }>().job_id
  }

  async function completed (url: string, id: string): Promise<string> {
    const j = await waitFor(async () => {
      const r = (await send(`${url}/jobs/${id}`)).json<{ status: string, result?: { body: string } }>()
      return r.status === 'pending' ? null : r
    }, { timeoutMs: 20000, what: `job ${id} to end` })
    assert.equal(j.status, 'completed')
    return j.result?.body ?? ''
  }

  for (const store of ['memory', 'redis'] as const) {
    it(`${store} store: declared and consumed again; the pending job and new ones complete`, async () => {
      const results = `t-results-${randomBytes(4).toString('hex')}`
      const enq = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, ...(store === 'redis' ? { REDIS_URL } : {}) })
      running.push(enq)
      const queue = enq.context.jobs!.resultsQueue
      queues.push(queue)
      const pending = await job(enq.url, '/held')
      await waitFor(() => held.length === 1, { what: 'the service to hold the job' })
      const ch = await broker.channel()
      await ch.deleteQueue(queue)
      await ch.close()
      await waitFor(() => enq.logs.has('the broker cancelled the results queue consumer (queue deleted?); declaring it again'), { what: 'the cancel' })
      await waitFor(async () => (await broker.exists(queue)) && (await broker.consumers(queue)) === 1, { what: 'the results queue declared and consumed again' })
      held.shift()!()
      assert.equal(await completed(enq.url, pending), 'ran /held')
      const fresh = await job(enq.url, '/after')
      assert.equal(await completed(enq.url, fresh), 'ran /after')
    })
  }

  // The reply of a job whose results queue is gone for a few seconds (deleted,
  // its enqueuer restarting): the dequeuer gave the request
  // back, called the service again, and after DEQUEUER_MAX_ATTEMPTS such
  // returns dead-lettered it, its error reply failing the same way, so the
  // job stayed pending for good. Now the publish is tried again, the message
  // held: the service runs once and the job completes once the queue is back.
  it('the results queue gone for a moment when a reply is published: the reply is tried again, the service runs once, the job completes', async () => {
    const results = `t-results-${randomBytes(4).toString('hex')}`
    queues.push(results)
    const first = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, REDIS_URL })
    const id = await job(first.url, '/hold-first')
    await waitFor(() => held.length === 1, { what: 'the service to hold the job' })
    // Nobody declares the queue again until a new enqueuer starts: the reply has nowhere to go.
    await first.close()
    const ch = await broker.channel()
    await ch.deleteQueue(results)
    await ch.close()
    held.shift()!()
    await waitFor(() => deq.logs.has('a message came back unroutable: declaring the queues again and publishing it once more'), { what: 'the reply to come back unroutable' })
    // The reply has failed once. A missing reply queue is waited for a few seconds (settle.ts): a new enqueuer,
    // started now, declares it within them.
    const second = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, REDIS_URL })
    running.push(second)
    assert.equal(await completed(second.url, id), 'ran /hold-first')
    assert.equal(executions.get('/hold-first'), 1)
    assert.ok(deq.logs.has('cannot publish what a message\'s outcome needs; holding the message and trying again'))
    const metrics = (await send(`${deq.adminUrl}/metrics`)).body.toString()
    assert.match(metrics, /^dequeuer_publish_retries_total\{service="[^"]+"\} [1-9]/m)
    assert.doesNotMatch(metrics, /dequeuer_dead_letters_total\{[^}]*\} [1-9]/)
    // And jobs after it go through as usual.
    const fresh = await job(second.url, '/after-gone')
    assert.equal(await completed(second.url, fresh), 'ran /after-gone')
  })

  // Issue 18: on a cluster the results queue's node went down, its declare
  // failed, and with it the whole connection setup: every request got 503.
  // Here the declare fails for another reason (the queue exists as another
  // type) with the same effect before the fix.
  it('a results queue that cannot be declared costs jobs only: request/reply is served, jobs get 503', async () => {
    const results = `t-results-${randomBytes(4).toString('hex')}`
    queues.push(results)
    const ch = await broker.channel()
    await ch.assertQueue(results, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
    await ch.close()
    const enq = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, REDIS_URL }, { waitConnected: false })
    running.push(enq)
    await waitFor(async () => (await send(`${enq.url}/readyz`)).status === 200, { timeoutMs: 10000, what: 'the enqueuer to be ready despite its results queue' })
    const sync = await send(`${enq.url}/${service}/sync`, { method: 'POST', body: 'x' })
    assert.equal(sync.status, 200, sync.body.toString())
    const res = await send(`${enq.url}/${service}/job`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(res.status, 503)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_RESULTS_UNAVAILABLE')
    assert.equal(res.headers['retry-after'], '1')
    assert.ok(enq.logs.has('cannot consume the results queue; jobs are refused until it is back'))
  })
})
