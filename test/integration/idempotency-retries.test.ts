// A keyed request whose service answer is to be retried (DEQUEUER_RETRY_STATUSES)
// is retried for real: the dequeuer records only answers that end a message, so
// the retry calls the service again instead of replaying the first 503.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { REDIS_URL } from '../helpers/redis'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

describe('idempotency and retried statuses', () => {
  const service = uniqueService('idem-retry')
  let broker: TestBroker
  let echo: Echo
  let enq: TestEnqueuer
  let deq: TestDequeuer
  let calls = 0

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((_req, res) => {
      calls++
      res.writeHead(calls === 1 ? 503 : 200)
      res.end(calls === 1 ? 'busy' : 'done')
    })
    deq = await startTestDequeuer(service, echo.url, {
      DEQUEUER_IDEMPOTENCY_REDIS_URL: REDIS_URL,
      DEQUEUER_RETRY_STATUSES: '503',
      DEQUEUER_RETRY_DELAY_MS: '200',
      DEQUEUER_MAX_ATTEMPTS: '3',
      CIRCUIT_BREAKER_ENABLED: 'false',
    })
    await deq.consuming
    enq = await startTestEnqueuer({ ENQUEUER_IDEMPOTENCY: 'true', ENQUEUER_REPLY_TIMEOUT: '20' })
  })

  after(async () => {
    await enq?.close()
    await deq?.close()
    await echo?.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('a 503 to be retried is not recorded: the retry calls the service and the client gets its 200', async () => {
    const key = `"retry-${randomBytes(6).toString('hex')}"`
    const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'a', headers: { 'idempotency-key': key } })
    assert.equal(res.status, 200, res.body.toString())
    assert.equal(res.body.toString(), 'done')
    assert.equal(calls, 2)
  })
})
