// The job stores are bounded by the bytes of their results, not only by a
// count, and one caller flooding the store evicts its own jobs, not everyone
// else's (issue 21, item 5: 60 results of 10 MB took RSS from 57 to 741 MB,
// and a flood at ~1,400 jobs/s evicted other callers' jobs).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import Redis from 'ioredis'
import { loadConfig } from '../../src/config/load'
import { Heaviest } from '../../src/enqueuer/jobs/heaviest'
import { MemoryJobStore } from '../../src/enqueuer/jobs/memory-store'
import { RedisJobStore } from '../../src/enqueuer/jobs/redis-store'
import type { JobOutcome, JobRecord } from '../../src/enqueuer/jobs/store'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const MiB = 1024 * 1024

function job (id: string, caller: string): JobRecord {
  return { job_id: id, service: 's', status: 'pending', created_at: Date.now() / 1000, caller }
}

function result (bytes: number): JobOutcome {
  return { status: 'completed', completed_at: Date.now() / 1000, result: { status_code: 200, headers: {}, body: 'x'.repeat(bytes) } }
}

describe('the in-memory job store', () => {
  it('holds at most ASYNC_MAX_STORED_BYTES of results: 60 results of 1 MiB into a 4 MiB budget', async () => {
    const store = new MemoryJobStore(100000, 4 * MiB)
    for (let i = 0; i < 60; i++) {
      await store.create(job(`j${i}`, 'flooder'), 3600)
      await store.complete(`j${i}`, result(MiB), 3600)
      assert.ok(store.bytes <= 4 * MiB, `${store.bytes} bytes held after ${i + 1} results`)
    }
    // Without the budget all 60 MiB stayed; now the newest four results, the rest evicted.
    assert.equal(store.size, 4)
    assert.equal((await store.get('j59'))?.status, 'completed')
    assert.equal(await store.get('j0'), null)
  })

  it('a flood of jobs evicts the flooder\'s own jobs, never another caller\'s', async () => {
    const store = new MemoryJobStore(50, 4 * MiB)
    for (let i = 0; i < 5; i++) await store.create(job(`alice${i}`, 'alice'), 3600)
    await store.complete('alice0', result(1000), 3600)
    for (let i = 0; i < 1000; i++) await store.create(job(`mallory${i}`, 'mallory'), 3600)
    assert.equal(store.size, 50)
    for (let i = 0; i < 5; i++) assert.notEqual(await store.get(`alice${i}`), null, `alice${i}`)
    assert.equal(await store.get('mallory0'), null)
    assert.notEqual(await store.get('mallory999'), null)
  })

  it('byte pressure takes from the caller holding the most bytes', async () => {
    const store = new MemoryJobStore(1000, 3 * MiB)
    for (let i = 0; i < 20; i++) {
      await store.create(job(`small${i}`, 'alice'), 3600)
      await store.complete(`small${i}`, result(10000), 3600)
    }
    for (let i = 0; i < 10; i++) {
      await store.create(job(`big${i}`, 'mallory'), 3600)
      await store.complete(`big${i}`, result(MiB), 3600)
    }
    assert.ok(store.bytes <= 3 * MiB)
    for (let i = 0; i < 20; i++) assert.equal((await store.get(`small${i}`))?.status, 'completed', `small${i}`)
  })

  it('refuses a budget smaller than the largest result it must hold', () => {
    assert.throws(() => loadConfig({ RELAYQ_MODE: 'enqueuer', ASYNC_MAX_RESULT_BYTES: '2048', ASYNC_MAX_STORED_BYTES: '1024' }), /ASYNC_MAX_STORED_BYTES/)
  })

  it('knows the heaviest caller after any sequence of changes', () => {
    const h = new Heaviest()
    const usage = new Map<string, number>()
    let seed = 7
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
    for (let i = 0; i < 20000; i++) {
      const key = `c${rand(50)}`
      const u = rand(4) === 0 ? 0 : rand(1000000)
      h.set(key, u)
      if (u === 0) usage.delete(key)
      else usage.set(key, u)
      const max = Math.max(0, ...usage.values())
      const top = h.top()
      assert.equal(top === undefined ? 0 : usage.get(top), max)
    }
  })
})

describe('the Redis job store', () => {
  const prefix = `t-bounds-${randomBytes(4).toString('hex')}:`
  let redis: Redis
  before(() => { redis = new Redis(REDIS_URL) })
  after(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })

  it('keeps results within ASYNC_MAX_STORED_BYTES; what does not fit is a failed job that says so', async () => {
    const store = new RedisJobStore(REDIS_URL, { maxBytes: 3 * MiB, keyPrefix: prefix })
    try {
      assert.ok(await store.ready())
      const outcomes: JobRecord[] = []
      for (let i = 0; i < 5; i++) {
        const id = `00000000-0000-4000-8000-00000000000${i}`
        await store.create(job(id, 'c'), 60)
        outcomes.push((await store.complete(id, result(MiB), 60))!)
      }
      assert.deepEqual(outcomes.map((o) => o.status), ['completed', 'completed', 'completed', 'failed', 'failed'])
      assert.match(outcomes[3]!.error ?? '', /^RQ_ERR_JOB_STORE_FULL: .*ASYNC_MAX_STORED_BYTES/)
      assert.ok(await store.bytes() <= 3 * MiB)
      assert.equal((await store.get(outcomes[4]!.job_id))?.status, 'failed')
      // The same result written again (a redelivery) is not counted twice.
      await store.complete(outcomes[0]!.job_id, result(MiB), 60)
      assert.ok(await store.bytes() <= 3 * MiB)
    } finally {
      await store.close()
    }
  })
})

describe('through the enqueuer', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('bounds')
  const results = `t-results-${randomBytes(4).toString('hex')}`
  const dir = mkdtempSync(join(tmpdir(), 'relayq-bounds-'))
  const tokens = join(dir, 'tokens')
  const running: TestEnqueuer[] = []

  before(async () => {
    writeFileSync(tokens, 'alice\nmallory\n')
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      const size = Number(/size=(\d+)/.exec(req.url)?.[1] ?? '2')
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('y'.repeat(size))
    })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    for (const e of running) await e.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    rmSync(dir, { recursive: true, force: true })
    await broker.close()
  })

  async function enqueuer (env: Record<string, string>): Promise<TestEnqueuer> {
    const e = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, ...env })
    running.push(e)
    return e
  }

  it('a result over ASYNC_MAX_RESULT_BYTES ends as a failed job with a clear error', async () => {
    const enq = await enqueuer({ ASYNC_MAX_RESULT_BYTES: '65536' })
    const res = await send(`${enq.url}/${service}/x?size=100000`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async' } })
    assert.equal(res.status, 202)
    const id = res.json<{ job_id: string }>().job_id
    const done = await waitFor(async () => {
      const j = (await send(`${enq.url}/jobs/${id}`)).json<{ status: string, error?: string, result?: unknown }>()
      return j.status === 'pending' ? null : j
    }, { what: 'the job to end' })
    assert.equal(done.status, 'failed')
    assert.match(done.error ?? '', /^RQ_ERR_RESPONSE_TOO_LARGE: .*ASYNC_MAX_RESULT_BYTES \(65536\)/)
    assert.equal(done.result, undefined)
  })

  it('a token-guarded job survives another caller filling ASYNC_MAX_JOBS (it was evicted: 200 -> 404)', async () => {
    const enq = await enqueuer({ ASYNC_MAX_JOBS: '20', ENQUEUER_AUTH_TOKENS_FILE: tokens })
    const alice = { authorization: 'Bearer alice' }
    const res = await send(`${enq.url}/${service}/mine`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', ...alice } })
    assert.equal(res.status, 202)
    const id = res.json<{ job_id: string }>().job_id
    for (let i = 0; i < 60; i++) {
      const flood = await send(`${enq.url}/${service}/flood`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', authorization: 'Bearer mallory' } })
      assert.equal(flood.status, 202)
    }
    const mine = await send(`${enq.url}/jobs/${id}`, { headers: alice })
    assert.equal(mine.status, 200, mine.body.toString())
  })
})
