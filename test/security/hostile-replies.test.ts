// A hostile or buggy service answering over AMQP (it sees the reply-to
// address and correlation id of every request it gets): statuses outside
// 200-599 (1xx, 101) or not three decimal digits (0x12c) and invalid HEAD
// content-lengths are 502 RQ_ERR_MALFORMED_REPLY; its own x-correlation-id
// never sits beside relayq's; 204 carries no body or content-length.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Channel } from 'amqplib'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { send } from '../helpers/http'
import { startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'

/** What the service answers for each path: AMQP reply headers and body. */
const ANSWERS: Record<string, { headers: Record<string, unknown>, body?: string }> = {
  '/s101': { headers: { 'x-status-code': '101', upgrade: 'websocket' } },
  '/s100': { headers: { 'x-status-code': '100' } },
  '/hex': { headers: { 'x-status-code': '0x12c' } },
  '/s600': { headers: { 'x-status-code': 600 } },
  '/cl-abc': { headers: { 'x-status-code': '200', 'content-length': 'abc' } },
  '/cl-list': { headers: { 'x-status-code': '200', 'content-length': '5, 6' } },
  '/cl-ok': { headers: { 'x-status-code': '200', 'content-length': '42' } },
  '/corr': { headers: { 'x-status-code': '200', 'x-correlation-id': 'chosen-by-the-service' }, body: 'ok' },
  '/nocontent': { headers: { 'x-status-code': '204' }, body: 'a body 204 must not have' },
}

describe('hostile AMQP replies', () => {
  let broker: TestBroker
  let enq: TestEnqueuer
  let ch: Channel
  const service = uniqueService('replies')

  before(async () => {
    broker = await connectBroker()
    ch = await broker.channel()
    await ch.assertQueue(`${service}_requests`, { arguments: { 'x-dead-letter-exchange': 'relayq.dlx' } })
    await ch.consume(`${service}_requests`, (m) => {
      if (m === null) return
      const path = String((m.properties.headers as Record<string, unknown>)['x-http-path'])
      const answer = ANSWERS[path] ?? { headers: { 'x-status-code': '200' } }
      ch.sendToQueue(m.properties.replyTo as string, Buffer.from(answer.body ?? ''), { correlationId: m.properties.correlationId as string, headers: answer.headers })
    }, { noAck: true })
    enq = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false' })
  })
  after(async () => {
    await enq?.close()
    await ch?.close().catch(() => {})
    await broker.deleteService(service)
    await broker.close()
  })

  for (const [path, method] of [['/s101', 'GET'], ['/s100', 'GET'], ['/hex', 'GET'], ['/s600', 'GET'], ['/cl-abc', 'HEAD'], ['/cl-list', 'HEAD']] as const) {
    it(`${method} ${path} is answered 502 RQ_ERR_MALFORMED_REPLY`, async () => {
      const res = await send(`${enq.url}/${service}${path}`, { method })
      assert.equal(res.status, 502)
      assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_MALFORMED_REPLY')
      assert.equal(res.headers.upgrade, undefined)
    })
  }

  it('a valid HEAD content-length passes', async () => {
    const res = await send(`${enq.url}/${service}/cl-ok`, { method: 'HEAD' })
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-length'], '42')
  })

  it('the service\'s own x-correlation-id does not appear beside relayq\'s', async () => {
    const res = await send(`${enq.url}/${service}/corr`)
    assert.equal(res.status, 200)
    assert.equal(typeof res.headers['x-correlation-id'], 'string')
    assert.notEqual(res.headers['x-correlation-id'], 'chosen-by-the-service')
  })

  it('204 goes out without a body or content-length', async () => {
    const res = await send(`${enq.url}/${service}/nocontent`)
    assert.equal(res.status, 204)
    assert.equal(res.headers['content-length'], undefined)
    assert.equal(res.body.length, 0)
  })
})
