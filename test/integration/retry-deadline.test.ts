// Retries keep the caller's deadline: a failed call is not retried when its
// caller gives up before the retry would run (or already has: a call cut off
// at the caller's deadline); it is dead-lettered as expired, at once. When the
// deadline leaves room, retries go on as before.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

function counter (metrics: string, name: string, reason: string): number {
  const m = new RegExp(`${name}\\{service="[^"]+",reason="${reason}"\\} ([0-9]+)`).exec(metrics)
  return m === null ? 0 : Number(m[1])
}

describe('retries and the caller\'s deadline', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  const service = uniqueService('retrydl')
  const calls = new Map<string, number>()

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      calls.set(req.url, (calls.get(req.url) ?? 0) + 1)
      if (req.url === '/hang') return // never answers: the call is cut off at the caller's deadline
      res.writeHead(503)
      res.end('busy')
    })
    deq = await startTestDequeuer(service, echo.url, {
      DEQUEUER_RETRY_STATUSES: '503', DEQUEUER_RETRY_DELAY_MS: '1000', DEQUEUER_MAX_ATTEMPTS: '3', CIRCUIT_BREAKER_ENABLED: 'false', DOWNSTREAM_TIMEOUT: '60',
    })
    await deq.consuming
    enq = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false' })
  })
  after(async () => {
    await enq?.close()
    await deq?.close()
    await echo?.close()
    await broker.deleteService(service)
    await broker.close()
  })

  const metrics = async (): Promise<string> => (await send(`${deq.adminUrl}/metrics`)).body.toString()

  it('a failure whose retry would come after the deadline, and a call cut off at the deadline, are not retried', async () => {
    const [failed, hung] = await Promise.all([
      send(`${enq.url}/${service}/fail`, { method: 'POST', body: 'a', headers: { 'x-relayq-timeout-ms': '800' } }),
      send(`${enq.url}/${service}/hang`, { method: 'POST', body: 'b', headers: { 'x-relayq-timeout-ms': '800' } }),
    ])
    assert.ok([502, 504].includes(failed.status), String(failed.status))
    assert.equal(hung.status, 504)
    const dead = await waitFor(async () => {
      const all = await broker.peekAll(`${service}_requests.dlq`)
      return all.length >= 2 ? all : null
    }, { what: 'two dead letters' })
    for (const m of dead) assert.equal((m.properties.headers as Record<string, unknown>)['x-relayq-dead-letter-reason'], 'expired')
    const text = await metrics()
    assert.equal(counter(text, 'dequeuer_retries_total', 'downstream_status'), 0)
    assert.equal(counter(text, 'dequeuer_retries_total', 'downstream_timeout'), 0)
    assert.equal(await broker.depth(`${service}_requests.retry.1000`), 0)
    assert.equal(calls.get('/hang'), 1)
    assert.ok((calls.get('/fail') ?? 0) <= 1)
  })

  it('a failure with time left is retried until DEQUEUER_MAX_ATTEMPTS', async () => {
    const res = await send(`${enq.url}/${service}/later`, { method: 'POST', body: 'c', headers: { 'x-relayq-timeout-ms': '30000' } })
    assert.equal(res.status, 502)
    assert.equal(calls.get('/later'), 3)
    assert.equal(counter(await metrics(), 'dequeuer_retries_total', 'downstream_status'), 2)
  })
})
