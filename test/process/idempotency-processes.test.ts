// Idempotency keys across real processes (the built bundle): two enqueuer
// replicas sharing Redis, and the two workers of one enqueuer sharing the
// primary's in-memory key store.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import Redis from 'ioredis'
import { scopedKey } from '../../src/enqueuer/idempotency/key'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('idempotency keys across processes', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('procidem')
  const running: RelayProcess[] = []
  const usedKeys: string[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`run ${randomBytes(6).toString('hex')} of ${req.body.toString()}`)
    })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
    // Only this run's keys (no prefix can be given to a process: its keys are named by service, caller and key).
    const redis = new Redis(REDIS_URL)
    if (usedKeys.length > 0) await redis.del(...usedKeys.map((k) => `relayq:idem:${scopedKey(service, '', k)}`))
    redis.disconnect()
  })

  async function enqueuer (env: Record<string, string>): Promise<{ p: RelayProcess, url: string }> {
    const port = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', LOG_LEVEL: 'warn', ENQUEUER_IDEMPOTENCY: 'true', ENQUEUER_IDEMPOTENCY_TTL: '60', ASYNC_JOBS: 'false', ...env })
    running.push(p)
    const url = `http://127.0.0.1:${port}`
    await waitReady(url)
    return { p, url }
  }

  const post = (url: string, key: string): Promise<{ status: number, body: string, replayed: unknown }> =>
    send(`${url}/${service}/p`, { method: 'POST', body: key, headers: { 'idempotency-key': `"${key}"`, connection: 'close' } })
      .then((r) => ({ status: r.status, body: r.body.toString(), replayed: r.headers['idempotent-replayed'] }))

  it('two replicas sharing Redis: the retry through the other replica is a replay', async () => {
    const [a, b] = await Promise.all([enqueuer({ REDIS_URL }), enqueuer({ REDIS_URL })])
    const key = `pr-${randomBytes(4).toString('hex')}`
    usedKeys.push(key)
    const first = await post(a.url, key)
    const retry = await post(b.url, key)
    assert.equal(first.status, 200)
    assert.deepEqual(retry, { status: 200, body: first.body, replayed: 'true' })
    assert.equal(echo.received.filter((r) => r.body.toString() === key).length, 1)
  })

  it('two workers of one enqueuer share the primary\'s in-memory key store', async () => {
    const { p, url } = await enqueuer({ ENQUEUER_WORKERS: '2', LOG_LEVEL: 'info' })
    await waitFor(() => new Set(p.logs().filter((l) => l.msg === 'ready').map((l) => l.pid)).size === 2, { what: 'both workers ready' })
    const key = `pw-${randomBytes(4).toString('hex')}`
    const first = await post(url, key)
    assert.equal(first.status, 200)
    // Fresh connections, spread over both workers by the primary.
    const retries = await Promise.all(Array.from({ length: 10 }, () => post(url, key)))
    for (const r of retries) assert.deepEqual(r, { status: 200, body: first.body, replayed: 'true' })
    assert.equal(echo.received.filter((r) => r.body.toString() === key).length, 1)
  })
})
