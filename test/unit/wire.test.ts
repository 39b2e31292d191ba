import assert from 'node:assert/strict'
import type { ConsumeMessage, Options } from 'amqplib'
import { describe, it } from 'node:test'
import {
  H, MalformedMessageError, deadLetterCopy, decodeRequest, decodeResponse, encodeRequest, encodeResponse,
  lostDeliveries, priorAttempts, replayCopy, republishCopy, type Publishable,
} from '../../src/amqp/wire'

/** What a consumer receives for a publish: amqplib's shapes, as the broker would hand them back. */
function delivered (p: Publishable, fields: Partial<ConsumeMessage['fields']> = {}): ConsumeMessage {
  const o: Options.Publish = p.options
  return {
    content: p.content,
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', consumerTag: 'c', ...fields },
    properties: {
      headers: JSON.parse(JSON.stringify(o.headers ?? {})),
      correlationId: o.correlationId,
      replyTo: o.replyTo,
      messageId: o.messageId,
      timestamp: o.timestamp,
      contentType: o.contentType,
      expiration: o.expiration,
      deliveryMode: o.persistent === true ? 2 : 1,
    },
  } as unknown as ConsumeMessage
}

const request = (over: Partial<Parameters<typeof encodeRequest>[0]> = {}): Publishable => encodeRequest({
  method: 'PUT',
  path: '/orders/7?x=1',
  headers: { 'content-type': 'application/json', 'x-multi': ['a', 'b'], 'x-uni': 'h\u00e9' },
  body: Buffer.from([0, 1, 2, 255]),
  correlationId: 'c-1',
  replyTo: 'amq.rabbitmq.reply-to',
  deadline: Date.now() + 5000,
  persistent: false,
  contentType: 'application/json',
  ...over,
})

describe('wire format', () => {
  it('request round trip: method, path, headers (repeated and latin1), body bytes, deadline', () => {
    const pub = request()
    assert.equal(pub.options.mandatory, true)
    assert.ok(Number(pub.options.expiration) > 4000 && Number(pub.options.expiration) <= 5000)
    assert.equal(pub.options.messageId, 'c-1')
    const req = decodeRequest(delivered(pub))
    assert.equal(req.method, 'PUT')
    assert.equal(req.path, '/orders/7?x=1')
    // Repeated request headers travel combined, as strings (ProxyMQ peers cannot read lists).
    assert.equal(req.headers['x-multi'], 'a, b')
    assert.equal(req.headers['x-uni'], 'h\u00e9')
    assert.equal(req.headers[H.method], undefined)
    assert.deepEqual([...req.body], [0, 1, 2, 255])
    assert.equal(req.correlationId, 'c-1')
    assert.equal(req.replyTo, 'amq.rabbitmq.reply-to')
    assert.ok(req.deadline !== null && req.deadline > Date.now())
  })

  it('reads ProxyMQ requests: no path means DOWNSTREAM_URL as is, no method means POST', () => {
    const msg = delivered({ content: Buffer.from('x'), options: { headers: { host: 'proxymq', 'content-length': '1', connection: 'keep-alive', 'x-keep': 'y' } } })
    const req = decodeRequest(msg)
    assert.equal(req.method, 'POST')
    assert.equal(req.path, null)
    assert.equal(req.deadline, null)
    assert.deepEqual(req.headers, { 'x-keep': 'y' })
  })

  for (const [name, headers] of [
    ['an unknown method', { [H.method]: 'BREW' }],
    ['a method of the wrong type', { [H.method]: { x: 1 } }],
    ['a path that climbs out', { [H.path]: '/a/../../etc' }],
    ['an absolute URL as path', { [H.path]: 'http://evil/x' }],
    ['a protocol-relative path', { [H.path]: '//evil/x' }],
    ['an encoded dot segment', { [H.path]: '/a/%2e%2e/b' }],
    ['a header with a line break', { 'x-bad': 'a\r\nb' }],
    ['a header with a table value', { 'x-bad': { nested: true } }],
    ['a deadline that is not a number', { [H.deadline]: 'soon' }],
  ] as const) {
    it(`refuses a message with ${name}`, () => {
      const msg = delivered({ content: Buffer.alloc(0), options: { headers } })
      assert.throws(() => decodeRequest(msg), MalformedMessageError)
    })
  }

  it('response round trip: status, repeated headers, body; relayq errors marked', () => {
    const pub = encodeResponse({ status: 201, headers: { 'set-cookie': ['a=1', 'b=2'], 'x-y': 'z' }, body: Buffer.from('ok'), correlationId: 'c-1', contentType: 'text/plain' })
    const res = decodeResponse(delivered(pub))
    assert.equal(res.status, 201)
    assert.deepEqual(res.headers, ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-y', 'z'])
    assert.equal(res.body.toString(), 'ok')
    assert.equal(res.correlationId, 'c-1')
    assert.equal(res.errorCode, undefined)
    const err = decodeResponse(delivered(encodeResponse({ status: 504, headers: {}, body: Buffer.from('{}'), correlationId: 'c', contentType: 'application/json', errorCode: 'RQ_ERR_DOWNSTREAM_TIMEOUT' })))
    assert.equal(err.status, 504)
    assert.equal(err.errorCode, 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    assert.deepEqual(err.headers, ['x-relayq-error', 'RQ_ERR_DOWNSTREAM_TIMEOUT'])
  })

  it('reads ProxyMQ replies: no x-status-code is 200, a number status works, junk is 502', () => {
    assert.equal(decodeResponse(delivered({ content: Buffer.alloc(0), options: { headers: {} } })).status, 200)
    assert.equal(decodeResponse(delivered({ content: Buffer.alloc(0), options: { headers: { 'x-status-code': 500 } } })).status, 500)
    assert.equal(decodeResponse(delivered({ content: Buffer.alloc(0), options: { headers: { 'x-status-code': 'teapot' } } })).status, 502)
  })

  it('drops reply headers Node could not write', () => {
    const res = decodeResponse(delivered({ content: Buffer.alloc(0), options: { headers: { 'x-ok': 'fine', 'x-wide': 'snow\u2603', 'bad name': 'v' } } }))
    assert.deepEqual(res.headers, ['x-ok', 'fine'])
  })

  it('retry copies count attempts in relayq\'s own header and drop the broker\'s', () => {
    const msg = delivered(request())
    ;(msg.properties.headers as Record<string, unknown>)[H.deliveryCount] = 2
    ;(msg.properties.headers as Record<string, unknown>)[H.death] = [{ reason: 'rejected' }]
    assert.equal(priorAttempts(msg, false), 0)
    assert.equal(priorAttempts(msg, true), 2)
    const copy = republishCopy(msg, { attempts: 3, lostDeliveries: 1, firstAttemptAt: 111, errorCode: 'RQ_ERR_DOWNSTREAM_TIMEOUT', errorMessage: 'slow' })
    const again = delivered(copy)
    assert.equal(priorAttempts(again, false), 3)
    assert.equal(priorAttempts(again, true), 3)
    assert.equal(lostDeliveries(again, false), 1)
    assert.equal(lostDeliveries(msg, true), 2)
    assert.equal((again.properties.headers as Record<string, unknown>)[H.death], undefined)
    assert.equal(copy.options.correlationId, 'c-1')
    assert.equal(copy.options.replyTo, 'amq.rabbitmq.reply-to')
    assert.equal(decodeRequest(again).method, 'PUT')
  })

  it('dead-letter copies say why, keep the body, and never expire', () => {
    const msg = delivered(request())
    const copy = deadLetterCopy(msg, { attempts: 3, lostDeliveries: 0, firstAttemptAt: 1, errorCode: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', errorMessage: 'refused', reason: 'max_attempts', originalQueue: 'orders_requests' })
    const h = copy.options.headers as Record<string, unknown>
    assert.equal(h[H.deadLetterReason], 'max_attempts')
    assert.equal(h[H.attempts], '3')
    assert.equal(h[H.lastErrorCode], 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    assert.equal(h[H.originalQueue], 'orders_requests')
    assert.equal(copy.options.expiration, undefined)
    assert.equal(copy.options.persistent, true)
    assert.deepEqual([...copy.content], [0, 1, 2, 255])
  })

  it('replay copies reset attempts and deadline but keep the request', () => {
    const dl = delivered(deadLetterCopy(delivered(request()), { attempts: 3, lostDeliveries: 2, firstAttemptAt: 1, reason: 'expired', originalQueue: 'q' }))
    const replay = delivered(replayCopy(dl))
    const h = replay.properties.headers as Record<string, unknown>
    assert.equal(h[H.attempts], undefined)
    assert.equal(h[H.lostDeliveries], undefined)
    assert.equal(h[H.deadLetterReason], undefined)
    assert.equal(h[H.deadline], undefined)
    const req = decodeRequest(replay)
    assert.equal(req.method, 'PUT')
    assert.equal(req.path, '/orders/7?x=1')
    assert.equal(req.deadline, null)
  })
})
