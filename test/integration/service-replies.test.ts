// Service answers a broker message cannot carry: answered at once with their
// own code, the service called once, the message acked (it used to be
// requeued and retried until RQ_ERR_REDELIVERY_LIMIT).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('service replies relayq cannot carry', () => {
  let broker: TestBroker
  let svc: Echo
  let enq: TestEnqueuer
  let deq: TestDequeuer
  const service = uniqueService('replies')

  before(async () => {
    broker = await connectBroker()
    svc = await startEcho((req, res) => {
      // AMQP header names are short strings: at most 255 bytes.
      if (req.url.startsWith('/long-name')) res.setHeader(`x-${'n'.repeat(300)}`, 'v')
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    })
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '30', ENQUEUER_BREAKER_ENABLED: 'false' })
    deq = await startTestDequeuer(service, svc.url, { DEQUEUER_MAX_ATTEMPTS: '3', DEQUEUER_RETRY_DELAY_MS: '200', CIRCUIT_BREAKER_ENABLED: 'false' })
    await deq.consuming
  })

  after(async () => {
    await deq.close()
    await enq.close()
    await svc.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('a 300-byte header name: 502 RQ_ERR_REPLY_UNENCODABLE at once, the service called once, the message acked', async () => {
    const r = await send(`${enq.url}/${service}/long-name`, { method: 'POST', body: 'x' })
    assert.equal(r.status, 502)
    assert.equal(r.headers['x-relayq-error'], 'RQ_ERR_REPLY_UNENCODABLE')
    assert.equal((JSON.parse(r.body.toString()) as { code: string }).code, 'RQ_ERR_REPLY_UNENCODABLE')
    await waitFor(() => deq.inflight.count === 0, { what: 'the message to settle' })
    assert.equal(svc.received.filter((q) => q.url.startsWith('/long-name')).length, 1, 'the service was called once')
    assert.equal(await broker.depth(`${service}_requests`), 0)
    assert.equal(await broker.depth(`${service}_requests.dlq`), 0, 'nothing dead-lettered')
    const metrics = (await send(`${deq.adminUrl}/metrics`)).body.toString()
    assert.match(metrics, /dequeuer_failed_total\{service="[^"]+",reason="reply_unencodable"\} 1/)
    assert.doesNotMatch(metrics, /dequeuer_retried_total\{[^}]*\} [1-9]/)
    // The next request is served as usual.
    const ok = await send(`${enq.url}/${service}/fine`, { method: 'POST', body: 'y' })
    assert.equal(ok.status, 200)
    assert.equal(ok.body.toString(), 'ok')
  })
})
