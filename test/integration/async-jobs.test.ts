// Async jobs: 202 once the broker has confirmed the message, then the result
// through GET /jobs/{id}, from memory or from Redis, guarded by the creator's token.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import { after, afterEach, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send, type Answer } from '../helpers/http'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'


interface Job {
  job_id: string
  status: string
  service: string
  created_at: number
  completed_at: number
  error?: string
  result: { status_code: number, body: string, body_encoding?: string, headers: Record<string, string> }
}

async function finished (url: string, headers: Record<string, string> = {}): Promise<Job> {
  return waitFor(async () => {
    const job = (await send(url, { headers })).json<Job>()
    return job.status !== 'pending' ? job : null
  }, { timeoutMs: 15000, what: `${url} to finish` })
}

function assertAccepted (res: Answer): string {
  assert.equal(res.status, 202, res.body.toString())
  const body = res.json<{ job_id: string, status: string, message: string }>()
  assert.match(body.job_id, /^[0-9a-f-]{36}$/)
  assert.equal(body.status, 'pending')
  assert.equal(typeof body.message, 'string')
  assert.equal(res.headers.location, `/jobs/${body.job_id}`)
  return body.job_id
}

describe('async jobs', () => {
  let broker: TestBroker
  let echo: Echo
  const service = uniqueService('jobs')
  const results = `t-results-${randomBytes(4).toString('hex')}`
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      res.writeHead(201, { 'content-type': 'application/octet-stream', 'x-seen-path': req.url })
      res.end(req.body)
    })
    const deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '1' })
    await deq.consuming
    cleanup.push(() => deq.close())
  })
  afterEach(async () => { while (cleanup.length > 1) await cleanup.pop()!() })
  after(async () => {
    while (cleanup.length > 0) await cleanup.pop()!()
    await echo.close()
    await broker.deleteService(service)
    const ch = await broker.channel()
    await ch.deleteQueue(results).catch(() => {})
    await ch.close().catch(() => {})
    await broker.close()
  })

  async function enqueuer (env: Record<string, string> = {}): Promise<TestEnqueuer> {
    const enq = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, ...env })
    cleanup.push(() => enq.close())
    return enq
  }

  it('Prefer: respond-async gives 202 with a job id, then the completed result (binary bodies in base64)', async () => {
    const enq = await enqueuer()
    const text = await send(`${enq.url}/${service}/a?x=1`, { method: 'POST', body: 'hello job', headers: { prefer: 'respond-async' } })
    const id = assertAccepted(text)
    const job = await finished(`${enq.url}/jobs/${id}`)
    assert.equal(job.status, 'completed')
    assert.equal(job.service, service)
    assert.ok(job.completed_at >= job.created_at)
    assert.equal(job.result.status_code, 201)
    assert.equal(job.result.body, 'hello job')
    assert.equal(job.result.body_encoding, undefined)
    assert.equal(job.result.headers['x-seen-path'], '/a?x=1')
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x01])
    const bin = assertAccepted(await send(`${enq.url}/${service}/b`, { method: 'POST', body: bytes, headers: { prefer: 'respond-async' } }))
    const binJob = await finished(`${enq.url}/jobs/${bin}`)
    assert.equal(binJob.result.body_encoding, 'base64')
    assert.deepEqual(Buffer.from(binJob.result.body, 'base64'), bytes)
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(metrics, new RegExp(`enqueuer_async_jobs_created_total\\{service="${service}"\\} 2`))
    assert.match(metrics, new RegExp(`enqueuer_async_jobs_completed_total\\{service="${service}",status="completed"\\} 2`))
  })

  it('ASYNC_MODE=true, as ProxyMQ: a POST is a job, other methods 405 unless they ask Prefer: respond-async; unknown ids are 404', async () => {
    const enq = await enqueuer({ ASYNC_MODE: 'true' })
    const id = assertAccepted(await send(`${enq.url}/${service}/c`, { method: 'POST', body: 'x' }))
    assert.equal((await finished(`${enq.url}/jobs/${id}`)).status, 'completed')
    const before = echo.received.length
    for (const method of ['GET', 'PUT', 'DELETE', 'HEAD']) {
      const refused = await send(`${enq.url}/${service}/c`, { method, ...(method === 'PUT' ? { body: 'x' } : {}) })
      assert.equal(refused.status, 405, method)
      assert.equal(refused.headers['x-relayq-error'], 'RQ_ERR_METHOD_NOT_ALLOWED')
      assert.equal(refused.headers.allow, 'POST')
      if (method !== 'HEAD') assert.match(refused.json<{ detail: string }>().detail, /ASYNC_MODE=true: only POST/)
    }
    assert.equal(echo.received.length, before)
    const put = assertAccepted(await send(`${enq.url}/${service}/d`, { method: 'PUT', body: 'y', headers: { prefer: 'respond-async' } }))
    assert.equal((await finished(`${enq.url}/jobs/${put}`)).result.body, 'y')
    const unknown = await send(`${enq.url}/jobs/00000000-0000-4000-8000-000000000000`)
    assert.equal(unknown.status, 404)
    assert.equal(unknown.headers['x-relayq-error'], 'RQ_ERR_JOB_NOT_FOUND')
    assert.equal((await send(`${enq.url}/jobs/not-a-job`)).status, 404)
  })

  it('a job whose service cannot be reached ends failed, with the reason', async () => {
    const down = net.createServer((s) => s.resetAndDestroy())
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve))
    const other = uniqueService('jobsdown')
    const deq = await startTestDequeuer(other, `http://127.0.0.1:${(down.address() as net.AddressInfo).port}`, { DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false' })
    await deq.consuming
    cleanup.push(async () => { await deq.close(); await new Promise<void>((resolve) => down.close(() => resolve())); await broker.deleteService(other) })
    const enq = await enqueuer()
    const id = assertAccepted(await send(`${enq.url}/${other}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } }))
    const job = await finished(`${enq.url}/jobs/${id}`)
    assert.equal(job.status, 'failed')
    assert.match(job.error ?? "", /RQ_ERR_DOWNSTREAM_UNAVAILABLE/)
    assert.equal(job.result, undefined)
  })

  it('a job is readable only with the token it was created with; ASYNC_REQUIRE_AUTH refuses anonymous jobs', async () => {
    const enq = await enqueuer({ ASYNC_REQUIRE_AUTH: 'true' })
    const anon = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(anon.status, 401)
    assert.equal(anon.headers['x-relayq-error'], 'RQ_ERR_UNAUTHORIZED')
    const id = assertAccepted(await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', authorization: 'Bearer alice' } }))
    await finished(`${enq.url}/jobs/${id}`, { authorization: 'Bearer alice' })
    assert.equal((await send(`${enq.url}/jobs/${id}`, { headers: { authorization: 'Bearer bob' } })).status, 403)
    assert.equal((await send(`${enq.url}/jobs/${id}`)).status, 401)
    const open = await enqueuer({ ASYNC_AUTH_HEADER: 'X-Job-Key' })
    const id2 = assertAccepted(await send(`${open.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'x-job-key': 'k1' } }))
    await finished(`${open.url}/jobs/${id2}`, { 'x-job-key': 'k1' })
    assert.equal((await send(`${open.url}/jobs/${id2}`)).status, 403)
    assert.equal((await send(`${open.url}/jobs/${id2}`, { headers: { 'x-job-key': 'k2' } })).status, 403)
  })

  it('calls back an allowed URL when the job ends; refuses other hosts at submit', async () => {
    const got: Array<Record<string, unknown>> = []
    const hook = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => { got.push(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>); res.end() })
    })
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => new Promise((resolve) => hook.close(() => resolve())))
    const port = (hook.address() as net.AddressInfo).port
    const enq = await enqueuer({ ASYNC_CALLBACK_ALLOWED_HOSTS: `127.0.0.1:${port}` })
    const refused = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'x-relayq-callback-url': 'http://127.0.0.2:9/hook' } })
    assert.equal(refused.status, 400)
    assert.equal(refused.headers['x-relayq-error'], 'RQ_ERR_CALLBACK_NOT_ALLOWED')
    const id = assertAccepted(await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'call me', headers: { prefer: 'respond-async', 'x-relayq-callback-url': `http://127.0.0.1:${port}/hook` } }))
    await waitFor(() => got.length === 1, { what: 'the callback' })
    assert.equal(got[0]!.job_id, id)
    assert.equal(got[0]!.status, 'completed')
    assert.equal((got[0]!.result as { body: string }).body, 'call me')
  })

  it('with Redis, a job created through one enqueuer is read through another', async () => {
    const a = await enqueuer({ REDIS_URL })
    const b = await enqueuer({ REDIS_URL })
    const id = assertAccepted(await send(`${a.url}/${service}/r`, { method: 'POST', body: 'shared', headers: { prefer: 'respond-async' } }))
    const job = await finished(`${b.url}/jobs/${id}`)
    assert.equal(job.status, 'completed')
    assert.equal(job.result.body, 'shared')
  })

  it('answers 503 when Redis cannot be reached, and publishes nothing', async () => {
    const enq = await enqueuer({ REDIS_URL: 'redis://127.0.0.1:1/0' })
    const before = echo.received.length
    const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(res.status, 503)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_JOB_STORE_UNAVAILABLE')
    assert.ok(res.ms < 3000)
    assert.equal(echo.received.length, before)
  })
})
