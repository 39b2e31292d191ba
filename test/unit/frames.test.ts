// relayq encodes basic.publish itself (src/amqp/frames.ts); these tests hold
// its bytes to amqplib's own encoder for everything relayq sends.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import type { Options } from 'amqplib'
import { encodePublish, NotEncodedHere } from '../../src/amqp/frames'
import { encodeRequest, encodeResponse } from '../../src/amqp/wire'

// amqplib's package exports hide its internals; load them by file.
const lib = path.join(path.dirname(require.resolve('amqplib')), 'lib')
/* eslint-disable @typescript-eslint/no-require-imports */
const defs = require(path.join(lib, 'defs.js'))
const { publish: publishArgs } = require(path.join(lib, 'api_args.js'))
/* eslint-enable @typescript-eslint/no-require-imports */

const FRAME_MAX = 131072

/** What amqplib's connection.sendMessage writes for one publish. */
function amqplibBytes (channel: number, queue: string, options: Options.Publish, body: Buffer, frameMax = FRAME_MAX): Buffer {
  const fields = publishArgs('', queue, options)
  const parts: Buffer[] = [defs.encodeMethod(defs.BasicPublish, channel, fields), defs.encodeProperties(defs.BasicProperties, channel, body.length, fields)]
  for (let start = 0; start < body.length; start += frameMax - 8) {
    const slice = body.subarray(start, Math.min(body.length, start + frameMax - 8))
    const head = Buffer.alloc(7)
    head[0] = 3
    head.writeUInt16BE(channel, 1)
    head.writeUInt32BE(slice.length, 3)
    parts.push(head, slice, Buffer.from([0xce]))
  }
  return Buffer.concat(parts)
}

function ours (channel: number, queue: string, options: Options.Publish, body: Buffer, frameMax = FRAME_MAX): Buffer {
  return Buffer.concat(encodePublish(channel, '', queue, options, body, frameMax))
}

const request = encodeRequest({
  method: 'POST',
  path: '/orders/7?x=é',
  headers: { 'content-type': 'application/json', 'x-trace': 'abc', 'x-many': ['a', 'b'], 'x-ünicode': 'wert' },
  body: Buffer.from('{"a":1}'),
  deadline: 1764331200000,
  replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMjM0NTY3OAAAAAAAAAAA',
  correlationId: 'c-42',
  contentType: 'application/json',
  persistent: true,
})

describe('basic.publish frames', () => {
  it('match amqplib byte for byte for a relayq request', () => {
    assert.deepEqual(ours(3, 'orders_requests', request.options, request.content), amqplibBytes(3, 'orders_requests', request.options, request.content))
  })

  it('match amqplib for a response, an empty body and a transient message', () => {
    const res = encodeResponse({ status: 201, headers: { location: '/x' }, body: Buffer.alloc(0), correlationId: 'c-1', contentType: 'text/plain' })
    assert.deepEqual(ours(1, 'amq.rabbitmq.reply-to.abc', res.options, res.content), amqplibBytes(1, 'amq.rabbitmq.reply-to.abc', res.options, res.content))
  })

  it('match amqplib for every property and value type', () => {
    const options: Options.Publish = {
      mandatory: true,
      contentType: 'a/b',
      contentEncoding: 'gzip',
      headers: { s: 'x', b: 1, n: -1, s16: 300, i32: 70000, neg32: -70000, l: 2 ** 40, d: 1.5, t: true, f: false, v: null, a: ['x', 2, [3]], nested: { k: 'v', deep: { n: 5 } }, buf: Buffer.from([1, 2, 3]), skipped: undefined },
      deliveryMode: 2,
      priority: 7,
      correlationId: 'c',
      replyTo: 'r',
      expiration: '60000',
      messageId: 'm',
      timestamp: 1764331200,
      type: 't',
      userId: 'guest',
      appId: 'relayq',
    }
    assert.deepEqual(ours(65535, 'q', options, Buffer.from('body')), amqplibBytes(65535, 'q', options, Buffer.from('body')))
  })

  it('split a large body into frames of the negotiated size, as amqplib does', () => {
    const body = Buffer.alloc(300 * 1024, 7)
    assert.deepEqual(ours(2, 'q', { headers: {} }, body, 4096), amqplibBytes(2, 'q', { headers: {} }, body, 4096))
    assert.deepEqual(ours(2, 'q', { headers: {} }, body), amqplibBytes(2, 'q', { headers: {} }, body))
  })

  it('refuse what amqplib refuses, with a RangeError and before writing anything', () => {
    assert.throws(() => encodePublish(1, '', 'q', { headers: { ['k'.repeat(256)]: 'v' } }, Buffer.alloc(0), FRAME_MAX), RangeError)
    assert.throws(() => encodePublish(1, '', 'q', { headers: { big: 'x'.repeat(70000) } }, Buffer.alloc(0), FRAME_MAX), RangeError)
    assert.throws(() => defs.encodeProperties(defs.BasicProperties, 1, 0, publishArgs('', 'q', { headers: { big: 'x'.repeat(70000) } })), RangeError)
  })
})

describe('values left to amqplib', () => {
  for (const [name, value] of [['a typed value', { '!': 'timestamp', value: 1 }], ['a number beyond 2^53', 2 ** 60], ['NaN', NaN], ['a bigint', 1n]] as const) {
    it(`${name} is refused with NotEncodedHere, so the caller falls back`, () => {
      assert.throws(() => encodePublish(1, '', 'q', { headers: { v: value } }, Buffer.alloc(0), FRAME_MAX), NotEncodedHere)
    })
  }
})
