// Guard for src/amqp/handshake.ts and the classifier against the real broker
// and the pinned amqplib: if an upgrade stops putting reply codes on errors
// (or changes the internals the handshake hook uses), this fails by name.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as amqp from 'amqplib'
import { classify } from '../../src/amqp/errors'
import { captureHandshakeCloseCodes } from '../../src/amqp/handshake'
import { AMQP_URL, uniqueService } from '../helpers/broker'

const base = new URL(AMQP_URL)

describe('broker errors, classified by code', () => {
  it('the handshake hook installs on the pinned amqplib', () => {
    assert.equal(captureHandshakeCloseCodes(), true, 'amqplib internals changed: src/amqp/handshake.ts cannot read handshake close codes')
  })

  it('a missing vhost is 530 not_allowed; a wrong password 403 access_refused', async () => {
    const vhost = new URL(base.href)
    vhost.pathname = `/relayq-missing-${uniqueService()}`
    await assert.rejects(amqp.connect(vhost.href), (err: Error) => { assert.deepEqual(classify(err), { kind: 'not_allowed', retryable: false, code: 530 }); return true })
    const wrong = new URL(base.href)
    wrong.password = 'not-the-password'
    await assert.rejects(amqp.connect(wrong.href), (err: Error) => { assert.deepEqual(classify(err), { kind: 'access_refused', retryable: false, code: 403 }); return true })
  })

  it('amqps:// to the plain AMQP port is tls_not_tls', async () => {
    const tls = new URL(base.href)
    tls.protocol = 'amqps:'
    if (tls.port === '') tls.port = '5672'
    await assert.rejects(amqp.connect(tls.href), (err: Error) => { assert.equal(classify(err).kind, 'tls_not_tls'); return true })
  })

  it('a passive declare of a missing queue is 404; an inequivalent declare 406', async () => {
    const conn = await amqp.connect(AMQP_URL)
    const q = `${uniqueService('err')}_requests`
    try {
      const ch1 = await conn.createChannel()
      ch1.on('error', () => {})
      await assert.rejects(ch1.checkQueue(q), (err: Error) => classify(err).kind === 'not_found')
      const ch2 = await conn.createChannel()
      ch2.on('error', () => {})
      await ch2.assertQueue(q, { durable: false, autoDelete: true, arguments: { 'x-message-ttl': 1000 } })
      const ch3 = await conn.createChannel()
      ch3.on('error', () => {})
      await assert.rejects(ch3.assertQueue(q, { durable: false, autoDelete: true, arguments: { 'x-message-ttl': 2000 } }), (err: Error) => classify(err).kind === 'precondition_failed')
      await ch2.deleteQueue(q)
    } finally {
      await conn.close()
    }
  })
})
