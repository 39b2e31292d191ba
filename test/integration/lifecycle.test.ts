// Connection and lifecycle details: a broker list, a queue deleted under a
// cached check, POST /drain on both admin ports, and the DLQ depth gauge.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('lifecycle', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => { res.writeHead(200); res.end(req.body) })
  })
  after(async () => {
    await echo.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  it('RABBITMQ_URL may list several brokers: a dead one is skipped', async () => {
    const enq = await startTestEnqueuer({ RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:1,${AMQP_URL}`, RABBITMQ_RECONNECT_MAX_MS: '100' })
    try {
      assert.equal((await send(`${enq.url}/readyz`)).status, 200)
    } finally {
      await enq.close()
    }
  })

  it('a queue deleted after it was checked: the mandatory publish comes back, and the client gets 404 at once', async () => {
    const service = uniqueService('gone')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '60000', ENQUEUER_BREAKER_ENABLED: 'false' })
    try {
      assert.equal((await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'a' })).status, 200)
      await deq.close()
      const ch = await broker.channel()
      await ch.deleteQueue(`${service}_requests`)
      await ch.close()
      // The cache still says the queue is there with a consumer; only the broker's return can tell.
      const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'b' })
      assert.equal(res.status, 404)
      assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_QUEUE_NOT_FOUND')
      assert.ok(res.ms < 1000, `answered after ${res.ms} ms`)
    } finally {
      await enq.close()
    }
  })

  it('POST /drain on the dequeuer stops consuming and answers once drained', async () => {
    const service = uniqueService('drain')
    services.push(service)
    const slow = await startEcho((req, res) => { setTimeout(() => { res.writeHead(200); res.end(req.body) }, 500) })
    const deq = await startTestDequeuer(service, slow.url)
    await deq.consuming
    const enq = await startTestEnqueuer()
    try {
      const inflight = send(`${enq.url}/${service}/x`, { method: 'POST', body: 'finish me' })
      await waitFor(() => slow.received.length === 1)
      const drained = await send(`${deq.adminUrl}/drain`, { method: 'POST' })
      assert.equal(drained.status, 200)
      assert.equal((await inflight).body.toString(), 'finish me', 'the message in flight was finished before the drain answered')
      assert.equal(await broker.consumers(`${service}_requests`), 0)
      assert.equal((await send(`${deq.adminUrl}/readyz`)).status, 503)
      assert.equal((await send(`${deq.adminUrl}/livez`)).status, 200)
    } finally {
      await enq.close()
      await deq.close()
      await slow.close()
    }
  })

  it('with ADMIN_PORT, the admin endpoints and POST /drain live there and not on the public port', async () => {
    const enq = await startTestEnqueuer({ ADMIN_PORT: '0', ADMIN_HOST: '127.0.0.1' })
    try {
      const admin = `http://127.0.0.1:${enq.adminPort!}`
      assert.equal((await send(`${enq.url}/metrics`)).status, 404)
      assert.equal((await send(`${enq.url}/drain`, { method: 'POST' })).status, 404)
      assert.match((await send(`${admin}/metrics`)).body.toString(), /relayq_build_info/)
      assert.equal((await send(`${admin}/readyz`)).status, 200)
      assert.equal((await send(`${admin}/drain`, { method: 'POST' })).status, 200)
      assert.equal((await send(`${admin}/readyz`)).status, 503)
    } finally {
      await enq.close()
    }
  })

  it('the dead-letter queue depth is polled into a gauge', async () => {
    const service = uniqueService('dlqgauge')
    services.push(service)
    const deq = await startTestDequeuer(service, echo.url, { DLQ_POLL_INTERVAL_MS: '200' })
    try {
      await deq.consuming
      await broker.publish(`${service}_requests`, Buffer.from('x'), { headers: { 'x-http-method': 'BREW' } })
      await waitFor(async () => /dequeuer_dead_letter_queue_messages\{service="[^"]+"\} 1/.test((await send(`${deq.adminUrl}/metrics`)).body.toString()), { what: 'the gauge to show 1' })
    } finally {
      await deq.close()
    }
  })
})
