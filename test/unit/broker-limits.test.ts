// The enqueuer's body limit against the broker's largest message.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bodyLimitProblemAtConnect, defaultMessageLimit } from '../../src/config/broker-limits'
import { ConfigError, loadConfig } from '../../src/config/load'

const MiB = 1024 * 1024
const base = { RELAYQ_MODE: 'enqueuer', RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:5672' }

describe('broker message limit', () => {
  it('defaults by version: 128 MiB up to 3.13, 16 MiB from 4.0 (and when the version is unknown)', () => {
    assert.equal(defaultMessageLimit('3.10.8'), 128 * MiB)
    assert.equal(defaultMessageLimit(Buffer.from('3.13.7')), 128 * MiB)
    assert.equal(defaultMessageLimit('4.1.0'), 16 * MiB)
    assert.equal(defaultMessageLimit(undefined), 16 * MiB)
  })

  it('RABBITMQ_MAX_MESSAGE_BYTES below the body limit stops start-up, naming ENQUEUER_MAX_BODY_BYTES and the broker limit', () => {
    assert.throws(() => loadConfig({ ...base, RABBITMQ_MAX_MESSAGE_BYTES: String(MiB) }), (err: Error) => {
      assert.ok(err instanceof ConfigError)
      assert.match(err.message, /ENQUEUER_MAX_BODY_BYTES \(10485760\).*RABBITMQ_MAX_MESSAGE_BYTES/)
      return true
    })
    const c = loadConfig({ ...base, RABBITMQ_MAX_MESSAGE_BYTES: String(MiB), ENQUEUER_MAX_BODY_BYTES: '1000000' })
    assert.equal(c.broker.maxMessageBytes, MiB)
    assert.doesNotThrow(() => loadConfig({ ...base, RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 's', DOWNSTREAM_URL: 'http://127.0.0.1:9', RABBITMQ_MAX_MESSAGE_BYTES: String(MiB) }))
  })

  it('at connect, unset: checked against the version\'s default', () => {
    assert.equal(bodyLimitProblemAtConnect(10 * MiB, 16384, 0, '4.0.5'), null)
    assert.match(bodyLimitProblemAtConnect(20 * MiB, 16384, 0, '4.0.5')!, /RabbitMQ 4\.0\.5/)
    assert.equal(bodyLimitProblemAtConnect(100 * MiB, 16384, 0, '3.10.8'), null)
    assert.match(bodyLimitProblemAtConnect(200 * MiB, 16384, 0, '3.10.8')!, /ENQUEUER_MAX_BODY_BYTES/)
    assert.equal(bodyLimitProblemAtConnect(200 * MiB, 16384, 512 * MiB, '3.10.8'), null, 'an explicit limit was checked at load')
  })
})
