// The classifier reads codes and types only: an error whose message says
// NOT_FOUND but carries no code is 'unknown', and one with code 404 and any
// message is 'not_found' (the one exception: a 404 whose reply text says the
// queue's home node is down, pinned below).
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, it } from 'node:test'
import { BrokerNackError, ChannelClosedError, classify, confirmError, watchConfirms } from '../../src/amqp/errors'
import { permanentReason } from '../../src/amqp/connection'
import { PublishError } from '../../src/dequeuer/publisher'

function coded (code: number | string, message = 'whatever the library says'): Error {
  return Object.assign(new Error(message), { code })
}

describe('classify', () => {
  it('maps AMQP reply codes', () => {
    const cases: Array<[number, string, boolean]> = [
      [404, 'not_found', false], [406, 'precondition_failed', false], [403, 'access_refused', false],
      [530, 'not_allowed', false], [405, 'resource_locked', true], [320, 'connection_forced', true], [541, 'broker_error', true],
    ]
    for (const [code, kind, retryable] of cases) assert.deepEqual(classify(coded(code)), { kind, retryable, code })
  })

  it('never reads the message', () => {
    assert.equal(classify(new Error('Operation failed: QueueDeclare; 404 (NOT-FOUND) NOT_FOUND')).kind, 'unknown')
    assert.equal(classify(new Error('ACCESS_REFUSED 403')).kind, 'unknown')
    assert.equal(classify(new Error('message nacked')).kind, 'unknown')
    assert.equal(classify(coded(404, 'anything')).kind, 'not_found')
  })

  it('a classic queue whose node is down is a 404 like a missing one: the reply text is never read (queue-check.ts tells them apart by state)', () => {
    // The exact error amqplib 2.3.1 gave on the cluster test's passive declare.
    const down = 'Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "NOT_FOUND - home node \'rabbit@a\' of durable queue \'s_requests\' in vhost \'/\' is down or inaccessible"'
    assert.equal(classify(coded(404, down)).kind, 'not_found')
    assert.equal(classify(new Error(down)).kind, 'unknown')
  })

  it('maps TLS and socket codes: not TLS at all, refused by the broker, a certificate that does not verify, the network', () => {
    assert.equal(classify(coded('ERR_SSL_WRONG_VERSION_NUMBER')).kind, 'tls_not_tls')
    assert.equal(classify(coded('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')).kind, 'tls_refused_by_broker')
    assert.equal(classify(coded('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')).kind, 'tls_refused_by_broker')
    for (const c of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT']) {
      assert.equal(classify(coded(c)).kind, 'tls_certificate', c)
    }
    assert.deepEqual(classify(coded('ECONNREFUSED')), { kind: 'network', retryable: true, code: 'ECONNREFUSED' })
  })

  it('types: the encoder\'s RangeError, a nack, a closed channel; a wrapper classifies as its cause and keeps it', () => {
    assert.equal(classify(new RangeError('out of range')).kind, 'unencodable')
    assert.equal(classify(new BrokerNackError('x')).kind, 'nacked')
    assert.equal(classify(new ChannelClosedError('x')).kind, 'channel_closed')
    const cause = new RangeError('value out of range')
    const wrapped = new PublishError('cannot publish', { cause })
    assert.equal(wrapped.cause, cause)
    assert.equal(classify(wrapped).kind, 'unencodable')
    assert.equal(classify(new PublishError('x', { cause: coded(406) })).code, 406)
    assert.equal(classify('a string').kind, 'unknown')
  })

  it('a failed confirm is a nack while the channel is open, a lost channel once it closes', () => {
    const ch = new EventEmitter()
    let fromClose: Error | null = null
    // amqplib's own close listener (registered first) fails the unconfirmed callbacks.
    ch.on('close', () => { fromClose = confirmError(ch, new Error('channel closed')) })
    watchConfirms(ch)
    assert.ok(confirmError(ch, new Error('message nacked')) instanceof BrokerNackError)
    ch.emit('close')
    assert.ok(fromClose! instanceof ChannelClosedError)
    assert.equal((fromClose as Error).cause instanceof Error, true)
  })

  it('start-up reasons name the variable to check', () => {
    assert.match(permanentReason(coded(530))!, /RABBITMQ_VHOST/)
    assert.match(permanentReason(coded(403))!, /ACCESS_REFUSED.*RABBITMQ_USER/)
    assert.match(permanentReason(coded('ERR_SSL_WRONG_VERSION_NUMBER'))!, /is this a TLS port\?/)
    assert.equal(permanentReason(coded('ECONNREFUSED')), null)
    assert.equal(permanentReason(coded(320)), null)
  })
})
