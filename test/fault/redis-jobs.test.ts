// The Redis job store under faults: a Redis that lost its data (restarted
// without persistence) still gets the results of jobs it had accepted, and an
// unreachable Redis is reported at start-up and in readiness, naming REDIS_URL.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import Redis from 'ioredis'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('jobs in Redis under faults', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let redis: Redis
  const service = uniqueService('redisjobs')
  const results = `t-results-${randomBytes(4).toString('hex')}`
  const running: TestEnqueuer[] = []
  let release: () => void = () => {}

  before(async () => {
    broker = await connectBroker()
    redis = new Redis(REDIS_URL)
    echo = await startEcho(async (req, res) => {
      if (req.url.startsWith('/held')) await new Promise<void>((resolve) => { release = resolve })
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`ran ${req.url}`)
    })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    release()
    for (const e of running) await e.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    const ch = await broker.channel()
    await ch.deleteQueue(results).catch(() => {})
    await ch.close().catch(() => {})
    await broker.close()
    redis.disconnect()
  })

  async function enqueuer (env: Record<string, string>): Promise<TestEnqueuer> {
    const e = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, ...env })
    running.push(e)
    return e
  }

  it('a job whose record Redis lost while it ran still gets its result, with the TTL (it was a 404 for ever)', async () => {
    const enq = await enqueuer({ REDIS_URL, ASYNC_JOB_TTL: '600' })
    const res = await send(`${enq.url}/${service}/held`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', authorization: 'Bearer alice' } })
    assert.equal(res.status, 202)
    const id = res.json<{ job_id: string }>().job_id
    await waitFor(() => echo.received.some((r) => r.url === '/held'), { what: 'the service to get the job' })
    // What a Redis restart without persistence does to this job: its key is gone.
    assert.equal(await redis.del(`relayq:job:${id}`), 1)
    assert.equal((await send(`${enq.url}/jobs/${id}`)).status, 404)
    release()
    const job = await waitFor(async () => {
      const r = await send(`${enq.url}/jobs/${id}`)
      return r.status === 200 ? r.json<{ status: string, result: { body: string } }>() : null
    }, { what: 'the result to be written' })
    assert.equal(job.status, 'completed')
    assert.equal(job.result.body, 'ran /held')
    const ttl = await redis.ttl(`relayq:job:${id}`)
    assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl}`)
    await redis.del(`relayq:job:${id}`)
  })

  async function closedPort (): Promise<number> {
    const s = net.createServer()
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
    const port = (s.address() as net.AddressInfo).port
    await new Promise<void>((resolve) => s.close(() => resolve()))
    return port
  }

  it('an unreachable Redis is said at start-up, naming REDIS_URL; jobs get 503, request/reply still works (it said "ready" and nothing else)', async () => {
    const port = await closedPort()
    const enq = await enqueuer({ REDIS_URL: `redis://:secret@127.0.0.1:${port}/0` })
    const line = await waitFor(() => enq.logs.lines.find((l) => String(l.msg).includes(`REDIS_URL=redis://127.0.0.1:${port}/0`)), { what: 'a log line naming REDIS_URL' })
    assert.equal(line.level, 'error')
    assert.doesNotMatch(JSON.stringify(enq.logs.lines), /secret/)
    // Degraded, as documented: ready for request/reply, jobs refused at once.
    assert.equal((await send(`${enq.url}/readyz`)).status, 200)
    assert.equal((await send(`${enq.url}/${service}/sync`)).status, 200)
    const job = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(job.status, 503)
    assert.equal(job.headers['x-relayq-error'], 'RQ_ERR_JOB_STORE_UNAVAILABLE')
  })

  it('with ASYNC_MODE=true, where every POST is a job, readiness is 503 and names REDIS_URL', async () => {
    const port = await closedPort()
    const enq = await enqueuer({ REDIS_URL: `redis://127.0.0.1:${port}/0`, ASYNC_MODE: 'true' })
    const ready = await waitFor(async () => {
      const r = await send(`${enq.url}/readyz`)
      return r.status === 503 ? r.json<{ reason: string }>() : null
    }, { what: 'readiness to say the job store is unreachable' })
    assert.match(ready.reason, new RegExp(`REDIS_URL=redis://127\\.0\\.0\\.1:${port}/0`))
  })
})
