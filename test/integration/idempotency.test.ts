// Idempotency keys at the edge (ENQUEUER_IDEMPOTENCY=true), against the real
// broker, a real service and the real Redis (keys under a prefix of this run's
// own, deleted afterwards), plus a private redis-server that is killed.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import Redis from 'ioredis'
import { fingerprint, scopedKey } from '../../src/enqueuer/idempotency/key'
import { RedisIdempotencyStore } from '../../src/enqueuer/idempotency/redis-store'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo, type Received } from '../helpers/echo'
import { send, type Answer } from '../helpers/http'
import { freePort } from '../helpers/process'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type Env, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const PREFIX = `t-idem-${randomBytes(4).toString('hex')}:`

describe('idempotency keys', () => {
  let broker: TestBroker
  let echo: Echo
  const service = uniqueService('idem')
  const cleanup: Array<() => Promise<void>> = []
  const runs = (key: string): Received[] => echo.received.filter((r) => r.headers['idempotency-key'] === `"${key}"`)

  before(async () => {
    broker = await connectBroker()
    // Answers after `x-delay-ms` with a body that differs on every run, so a replay is told from a second run.
    echo = await startEcho(async (req, res) => {
      await new Promise((resolve) => setTimeout(resolve, Number(req.headers['x-delay-ms'] ?? 0)))
      const body = JSON.stringify({ run: randomBytes(8).toString('hex'), auth: req.headers.authorization ?? null, sha256: req.sha256 })
      res.writeHead(201, { 'content-type': 'application/json', 'x-service': 'yes' })
      res.end(body)
    })
    const deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '1', DEQUEUER_CONCURRENCY: '20' })
    await deq.consuming
    cleanup.push(() => deq.close())
  })
  afterEach(async () => { while (cleanup.length > 1) await cleanup.pop()!() })
  after(async () => {
    while (cleanup.length > 0) await cleanup.pop()!()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
    const redis = new Redis(REDIS_URL)
    const keys = await redis.keys(`${PREFIX}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })

  async function enqueuer (env: Env = {}, redisUrl: string | null = REDIS_URL): Promise<TestEnqueuer> {
    const deps = redisUrl === null ? {} : { idempotencyStore: new RedisIdempotencyStore(redisUrl, { keyPrefix: PREFIX }) }
    const enq = await startTestEnqueuer({ ENQUEUER_IDEMPOTENCY: 'true', ENQUEUER_IDEMPOTENCY_TTL: '120', ...env }, { deps })
    cleanup.push(() => enq.close())
    return enq
  }

  const post = (enq: TestEnqueuer, key: string | null, body = 'pay 10', headers: Record<string, string> = {}): Promise<Answer> =>
    send(`${enq.url}/${service}/pay?x=1`, { method: 'POST', body, headers: { ...(key === null ? {} : { 'idempotency-key': `"${key}"` }), ...headers } })

  it('refuses a key that is not one structured-field string of at most 255 characters (400), and lets unkeyed requests through', async () => {
    const enq = await enqueuer()
    for (const value of ['abc', '""', `"${'k'.repeat(256)}"`, '"a\\b"', ['"a"', '"b"']]) {
      const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'b', headers: { 'idempotency-key': value } })
      assert.equal(res.status, 400, String(value))
      assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_IDEMPOTENCY_KEY_INVALID')
    }
    assert.equal((await post(enq, null)).status, 201)
    assert.equal((await post(enq, 'k'.repeat(255), 'long key')).status, 201)
  })

  it('50 concurrent requests with one key: the service runs once, each gets its answer or 409, later replays are identical', async () => {
    const enq = await enqueuer()
    const key = `k50-${randomBytes(4).toString('hex')}`
    const answers = await Promise.all(Array.from({ length: 50 }, () => post(enq, key, 'pay 50', { 'x-delay-ms': '300' })))
    assert.equal(runs(key).length, 1)
    const ok = answers.filter((a) => a.status === 201)
    const conflicts = answers.filter((a) => a.status === 409)
    assert.equal(ok.length + conflicts.length, 50, answers.map((a) => a.status).join(','))
    assert.ok(ok.length >= 1)
    for (const c of conflicts) {
      assert.equal(c.headers['x-relayq-error'], 'RQ_ERR_IDEMPOTENCY_CONFLICT')
      assert.equal(c.headers['retry-after'], '1')
    }
    const first = ok.find((a) => a.headers['idempotent-replayed'] === undefined)!
    for (let i = 0; i < 2; i++) {
      const again = await post(enq, key, 'pay 50', { 'x-delay-ms': '300' })
      assert.equal(again.status, 201)
      assert.equal(again.headers['idempotent-replayed'], 'true')
      assert.ok(again.body.equals(first.body), 'replay byte for byte')
      assert.equal(again.headers['content-type'], 'application/json')
      assert.equal(again.headers['x-service'], 'yes')
      assert.equal(again.headers['x-correlation-id'], first.headers['x-correlation-id'])
    }
    assert.equal(runs(key).length, 1)
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.match(metrics, new RegExp(`enqueuer_idempotency_total\\{service="${service}",outcome="replayed"\\} 2`))
    assert.match(metrics, new RegExp(`enqueuer_idempotency_total\\{service="${service}",outcome="conflict"\\} ${conflicts.length}`))
  })

  it('Prefer: wait makes a retry wait for the first answer instead of a 409', async () => {
    const enq = await enqueuer()
    const key = `kw-${randomBytes(4).toString('hex')}`
    const first = post(enq, key, 'w', { 'x-delay-ms': '600' })
    await waitFor(() => runs(key).length === 1)
    const waited = await post(enq, key, 'w', { 'x-delay-ms': '600', prefer: 'wait' })
    const firstAnswer = await first
    assert.equal(waited.status, 201)
    assert.equal(waited.headers['idempotent-replayed'], 'true')
    assert.ok(waited.body.equals(firstAnswer.body))
    assert.equal(runs(key).length, 1)
    // A wait ends with the retry's own deadline: 409, still nothing run twice.
    const key2 = `kw2-${randomBytes(4).toString('hex')}`
    const slow = post(enq, key2, 'w', { 'x-delay-ms': '1500' })
    await waitFor(() => runs(key2).length === 1)
    const gaveUp = await post(enq, key2, 'w', { prefer: 'wait', 'x-relayq-timeout-ms': '300' })
    assert.equal(gaveUp.status, 409)
    assert.equal((await slow).status, 201)
    assert.equal(runs(key2).length, 1)
  })

  it('a first attempt that got 504 still completes in the store: the retry gets its answer and the service ran once', async () => {
    const enq = await enqueuer()
    const key = `k504-${randomBytes(4).toString('hex')}`
    const first = await post(enq, key, 'slow', { 'x-delay-ms': '1500', 'x-relayq-timeout-ms': '300' })
    assert.equal(first.status, 504)
    // 409 while it still runs, then the stored answer.
    const retry = await waitFor(async () => {
      const r = await post(enq, key, 'slow', { 'x-delay-ms': '1500' })
      return r.status === 409 ? null : r
    }, { timeoutMs: 15000, intervalMs: 200 })
    assert.equal(retry.status, 201)
    assert.equal(retry.headers['idempotent-replayed'], 'true')
    assert.equal(runs(key).length, 1)
  })

  it('the same key with another body is 422; with another bearer token it is another request', async () => {
    const enq = await enqueuer()
    const key = `kd-${randomBytes(4).toString('hex')}`
    assert.equal((await post(enq, key, 'one', { authorization: 'Bearer alice' })).status, 201)
    const other = await post(enq, key, 'two', { authorization: 'Bearer alice' })
    assert.equal(other.status, 422)
    assert.equal(other.headers['x-relayq-error'], 'RQ_ERR_IDEMPOTENCY_MISMATCH')
    const otherQuery = await send(`${enq.url}/${service}/pay?x=2`, { method: 'POST', body: 'one', headers: { 'idempotency-key': `"${key}"`, authorization: 'Bearer alice' } })
    assert.equal(otherQuery.status, 422)
    const bob = await post(enq, key, 'one', { authorization: 'Bearer bob' })
    assert.equal(bob.status, 201)
    assert.equal(bob.headers['idempotent-replayed'], undefined)
    assert.equal(bob.json<{ auth: string }>().auth, 'Bearer bob')
    assert.equal(runs(key).length, 2)
    const aliceAgain = await post(enq, key, 'one', { authorization: 'Bearer alice' })
    assert.equal(aliceAgain.json<{ auth: string }>().auth, 'Bearer alice')
  })

  it('two enqueuer replicas sharing Redis: a retry through the other replica is answered from the store', async () => {
    const a = await enqueuer()
    const b = await enqueuer()
    const key = `kr-${randomBytes(4).toString('hex')}`
    const first = await post(a, key)
    const retry = await post(b, key)
    assert.equal(retry.status, 201)
    assert.equal(retry.headers['idempotent-replayed'], 'true')
    assert.ok(retry.body.equals(first.body))
    assert.equal(runs(key).length, 1)
  })

  it('Prefer: respond-async with the same key returns the same job id (in-memory store)', async () => {
    const enq = await enqueuer({}, null)
    const key = `kj-${randomBytes(4).toString('hex')}`
    const first = await post(enq, key, 'job', { prefer: 'respond-async' })
    assert.equal(first.status, 202)
    const again = await post(enq, key, 'job', { prefer: 'respond-async' })
    assert.equal(again.status, 202)
    assert.equal(again.headers['idempotent-replayed'], 'true')
    assert.equal(again.json<{ job_id: string }>().job_id, first.json<{ job_id: string }>().job_id)
    assert.equal(again.headers.location, first.headers.location)
    await waitFor(() => runs(key).length === 1)
  })

  it('the store down: keyed requests get 503 and are not published; unkeyed requests still flow', async () => {
    const port = await freePort()
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    try {
      const url = `redis://127.0.0.1:${port}`
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
      probe.on('error', () => {})
      await waitFor(async () => (await probe.ping().catch(() => null)) === 'PONG')
      probe.disconnect()
      const enq = await enqueuer({ REDIS_URL: url, ASYNC_JOBS: 'false' }, url)
      const key = `ks-${randomBytes(4).toString('hex')}`
      assert.equal((await post(enq, key)).status, 201)
      redis.kill('SIGKILL')
      await new Promise((resolve) => redis.once('exit', resolve))
      const down = await post(enq, `${key}-2`)
      assert.equal(down.status, 503)
      assert.equal(down.headers['x-relayq-error'], 'RQ_ERR_IDEMPOTENCY_STORE_UNAVAILABLE')
      assert.equal((await post(enq, `${key}-3`)).status, 503)
      assert.equal(runs(`${key}-2`).length + runs(`${key}-3`).length, 0)
      assert.equal((await post(enq, null, 'unkeyed')).status, 201)
      const metrics = (await send(`${enq.url}/metrics`)).body.toString()
      assert.match(metrics, new RegExp(`enqueuer_idempotency_total\\{service="${service}",outcome="store_error"\\} 2`))
      // Said once per outage, not once per request.
      assert.equal(enq.logs.lines.filter((l) => String(l.msg).startsWith('the idempotency store cannot be reached')).length, 1)
    } finally {
      if (redis.exitCode === null) redis.kill('SIGKILL')
    }
  })

  it('the key travels as the AMQP message id and as a header; dequeuer-made errors are not stored (a retry runs again)', async () => {
    const enq = await enqueuer()
    const raw = uniqueService('idemraw')
    const ch = await broker.channel()
    await ch.assertQueue(`${raw}_requests`, { durable: false, autoDelete: true })
    const seen: Array<{ messageId: unknown, header: unknown }> = []
    await ch.consume(`${raw}_requests`, (msg) => {
      if (msg === null) return
      seen.push({ messageId: msg.properties.messageId, header: (msg.properties.headers ?? {})['idempotency-key'] })
      ch.ack(msg)
      ch.sendToQueue(msg.properties.replyTo as string, Buffer.from('{}'), {
        correlationId: msg.properties.correlationId as string,
        // What a dequeuer sends when it could not reach its service.
        headers: { 'x-status-code': '502', 'x-relayq-error': 'RQ_ERR_DOWNSTREAM_UNAVAILABLE' },
      })
    })
    try {
      const key = `kraw-${randomBytes(4).toString('hex')}`
      const send1 = (): Promise<Answer> => send(`${enq.url}/${raw}/x`, { method: 'POST', body: 'r', headers: { 'idempotency-key': `"${key}"` } })
      const first = await send1()
      assert.equal(first.status, 502)
      const retry = await send1()
      assert.equal(retry.status, 502)
      assert.equal(retry.headers['idempotent-replayed'], undefined)
      assert.deepEqual(seen, [{ messageId: key, header: `"${key}"` }, { messageId: key, header: `"${key}"` }])
    } finally {
      await ch.deleteQueue(`${raw}_requests`).catch(() => {})
      await ch.close().catch(() => {})
    }
  })

  it('an answer over ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES reaches its client; a retry gets 502 saying it ran once, and runs nothing', async () => {
    const enq = await enqueuer({ ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES: '10' })
    const key = `kbig-${randomBytes(4).toString('hex')}`
    const first = await post(enq, key)
    assert.equal(first.status, 201)
    assert.ok(first.body.length > 10)
    const retry = await post(enq, key)
    assert.equal(retry.status, 502)
    assert.equal(retry.headers['x-relayq-error'], 'RQ_ERR_RESPONSE_TOO_LARGE')
    assert.match(retry.json<{ detail: string }>().detail, /ran once/)
    assert.equal(runs(key).length, 1)
  })

  it('a stored answer Node will not write is refused 502, and the enqueuer goes on', async () => {
    const enq = await enqueuer()
    const key = `kbad-${randomBytes(4).toString('hex')}`
    // Written as the store writes it: a reply from whoever could publish to the reply address.
    const answer = { status: 200, headers: ['x-bad', 'a\u0100b'], body: '', correlationId: 'c' }
    const entry = { state: 'done', fingerprint: fingerprint('POST', `/${service}/pay?x=1`, Buffer.from('pay 10')), answer }
    const redis = new Redis(REDIS_URL)
    await redis.set(`${PREFIX}relayq:idem:${scopedKey(service, '', key)}`, JSON.stringify(entry), 'EX', 60)
    redis.disconnect()
    const res = await post(enq, key)
    assert.equal(res.status, 502)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_MALFORMED_REPLY')
    assert.equal(runs(key).length, 0)
    assert.equal((await post(enq, null)).status, 201)
  })

  it('off by default: the header passes through and nothing is deduplicated', async () => {
    const enq = await startTestEnqueuer()
    cleanup.push(() => enq.close())
    const key = `koff-${randomBytes(4).toString('hex')}`
    assert.equal((await post(enq, key)).status, 201)
    assert.equal((await post(enq, key)).status, 201)
    assert.equal(runs(key).length, 2)
    assert.equal((await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'b', headers: { 'idempotency-key': 'not-a-string' } })).status, 201)
  })
})
