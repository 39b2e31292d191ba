// What the wire format accepts from a hostile or buggy peer: control headers
// in range, a valid `expiration` on every copy, strict reply statuses and
// lengths. (Round trips are in wire.test.ts.)
import assert from 'node:assert/strict'
import type { ConsumeMessage } from 'amqplib'
import { describe, it } from 'node:test'
import { expirationUntil } from '../../src/amqp/header-values'
import { H, MalformedMessageError, deadLetterCopy, decodeRequest, decodeResponse, encodeRequest, replayCopy, republishCopy } from '../../src/amqp/wire'

function message (headers: Record<string, unknown>): ConsumeMessage {
  return {
    content: Buffer.from('x'),
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', consumerTag: 'c' },
    properties: { headers, correlationId: 'c-1' },
  } as unknown as ConsumeMessage
}

const counts = { attempts: 1, lostDeliveries: 0, firstAttemptAt: Date.now() }

describe('wire validation: requests', () => {
  it('reads deadlines and counts written as strings and as the integers older versions wrote', () => {
    const now = Date.now()
    assert.equal(decodeRequest(message({ [H.deadline]: String(now + 1000), [H.attempts]: '2' }), now).deadline, now + 1000)
    assert.equal(decodeRequest(message({ [H.deadline]: now + 1000, [H.attempts]: 2, [H.lostDeliveries]: 1 }), now).deadline, now + 1000)
    assert.equal(decodeRequest(message({ [H.deadline]: Buffer.from(String(now - 1000)) }), now).deadline, now - 1000)
  })

  for (const [what, headers] of [
    ['deadline 1e300', { [H.deadline]: 1e300 }],
    ['deadline "1e+300"', { [H.deadline]: '1e+300' }],
    ['deadline 31 days ahead', { [H.deadline]: Date.now() + 31 * 86400000 }],
    ['deadline 31 days ago', { [H.deadline]: Date.now() - 31 * 86400000 }],
    ['deadline with a fraction', { [H.deadline]: `${Date.now()}.5` }],
    ['deadline " 1"', { [H.deadline]: ` ${Date.now()}` }],
    ['attempts -1', { [H.attempts]: -1 }],
    ['attempts 2e6', { [H.attempts]: 2e6 }],
    ['lost deliveries "1e3"', { [H.lostDeliveries]: '1e3' }],
    ['delivery count 1.5', { [H.deliveryCount]: 1.5 }],
    ['first attempt at 0', { [H.firstAttemptAt]: 0 }],
  ] as const) {
    it(`refuses ${what} as malformed`, () => {
      assert.throws(() => decodeRequest(message(headers)), MalformedMessageError)
    })
  }

  it('never writes an invalid expiration on a copy, whatever the deadline header holds', () => {
    const now = Date.now()
    for (const deadline of [1e300, '1e300', -1e300, 'soon', Number.NaN, now + 31 * 86400000]) {
      const copy = republishCopy(message({ [H.deadline]: deadline }), counts, now)
      assert.equal(copy.options.expiration, undefined, String(deadline))
    }
    const ok = republishCopy(message({ [H.deadline]: String(now + 1500.4) }), counts, now)
    assert.equal(ok.options.expiration, undefined)
    assert.equal(republishCopy(message({ [H.deadline]: String(now + 1500) }), counts, now).options.expiration, '1500')
    assert.equal(expirationUntil(now - 50, now), '1')
    assert.equal(expirationUntil(now + 0.2, now), '1')
    assert.equal(expirationUntil(Number.POSITIVE_INFINITY, now), undefined)
  })
})

describe('wire validation: every header relayq writes is a string', () => {
  it('on requests, retry copies, dead-letter copies and replays, from a message an older relayq wrote with integers', () => {
    const now = Date.now()
    const old = message({ [H.method]: 'POST', [H.deadline]: now + 5000, [H.attempts]: 1, [H.lostDeliveries]: 1, [H.firstAttemptAt]: now, 'x-app': 'v' })
    const req = encodeRequest({ method: 'GET', path: '/a', headers: { 'x-multi': ['a', 'b'], cookie: ['c=1', 'd=2'] }, body: Buffer.alloc(0), correlationId: 'c', replyTo: null, deadline: now + 1000, persistent: false, contentType: undefined, jobId: 'j' })
    const copies = [
      req,
      republishCopy(old, { attempts: 2, lostDeliveries: 1, firstAttemptAt: now, errorCode: 'RQ_ERR_DOWNSTREAM_TIMEOUT', errorMessage: 'slow' }),
      deadLetterCopy(old, { attempts: 3, lostDeliveries: 0, firstAttemptAt: now, reason: 'max_attempts', originalQueue: 'q' }),
      replayCopy(old),
    ]
    for (const copy of copies) {
      for (const [k, v] of Object.entries(copy.options.headers as Record<string, unknown>)) assert.equal(typeof v, 'string', k)
    }
    assert.equal((req.options.headers as Record<string, unknown>).cookie, 'c=1; d=2')
    assert.equal(decodeRequest(message(copies[1]!.options.headers as Record<string, unknown>)).deadline, now + 5000)
  })
})

describe('wire validation: replies', () => {
  const reply = (headers: Record<string, unknown>): ReturnType<typeof decodeResponse> => decodeResponse(message(headers))

  it('reads a status of three decimal digits (string, Buffer) or an integer, from 200 to 599', () => {
    assert.equal(reply({ [H.status]: '201' }).status, 201)
    assert.equal(reply({ [H.status]: Buffer.from('404') }).status, 404)
    assert.equal(reply({ [H.status]: 503 }).status, 503)
    assert.equal(reply({}).status, 200)
  })

  for (const status of ['0x12c', '300 ', ' 300', '3e2', '300.0', '+300', '', '1000', 100, '101', '199', 600, 299.5]) {
    it(`a status of ${JSON.stringify(status)} is a malformed reply (502)`, () => {
      const r = reply({ [H.status]: status })
      assert.equal(r.status, 502)
      assert.equal(r.errorCode, 'RQ_ERR_MALFORMED_REPLY')
      assert.ok(r.malformed !== undefined)
      assert.deepEqual(r.headers, ['content-type', 'application/json', 'x-relayq-error', 'RQ_ERR_MALFORMED_REPLY'])
      assert.equal(JSON.parse(r.body.toString()).code, 'RQ_ERR_MALFORMED_REPLY')
    })
  }

  it('a content-length that is not a non-negative integer makes the reply malformed; a valid one is normalised', () => {
    for (const bad of ['abc', '5, 6', '-1', '1e3', ' 5', '0x10', 1.5]) assert.equal(reply({ [H.status]: '200', 'content-length': bad }).status, 502, String(bad))
    assert.equal(reply({ [H.status]: '200', 'content-length': '0012' }).contentLength, '12')
    assert.equal(reply({ [H.status]: '200', 'content-length': 7 }).contentLength, '7')
  })

  it('drops a service\'s own x-correlation-id (relayq sets its own)', () => {
    assert.deepEqual(reply({ [H.status]: '200', 'x-correlation-id': 'evil', 'x-ok': '1' }).headers, ['x-ok', '1'])
  })

  it('204 and 304 carry no body and no content-length', () => {
    const r = decodeResponse({ ...message({ [H.status]: '204', 'content-length': '5' }), content: Buffer.from('hello') })
    assert.equal(r.noBody, true)
    assert.equal(r.body.length, 0)
    assert.equal(r.contentLength, undefined)
  })

  it('an undecodable header table (the frame guard\'s marker) is a malformed reply, correlation id kept', () => {
    const r = reply({ [H.undecodable]: 'the header table is nested deeper than 32 levels' })
    assert.equal(r.status, 502)
    assert.equal(r.correlationId, 'c-1')
    assert.match(String(r.malformed), /nested deeper/)
  })
})
