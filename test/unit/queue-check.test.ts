import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ChannelModel } from 'amqplib'
import pino from 'pino'
import { QueueChecker, QueueChecksBusy } from '../../src/enqueuer/queue-check'

// A broker that never answers a channel open: every check stays in flight.
function stalledBroker (): { conn: ChannelModel, opened: () => number } {
  let opened = 0
  const conn = { createChannel: () => { opened++; return new Promise(() => {}) } }
  return { conn: conn as unknown as ChannelModel, opened: () => opened }
}

describe('queue checker', () => {
  it('refuses a flood of first-time checks with its own error, not a broker fault', async () => {
    const checker = new QueueChecker(1000, pino({ level: 'silent' }))
    const broker = stalledBroker()
    checker.attach(broker.conn)
    const pending = Array.from({ length: 40 }, (_, i) => Promise.resolve(checker.state(`svc${i}_requests`)))
    const settled = await Promise.race([
      Promise.allSettled(pending.slice(32)),
      new Promise((resolve) => setTimeout(resolve, 1000, 'timeout')),
    ])
    assert.notEqual(settled, 'timeout', 'checks past the limit must be refused at once')
    for (const r of settled as PromiseSettledResult<unknown>[]) {
      assert.equal(r.status, 'rejected')
      assert.ok(r.status === 'rejected' && r.reason instanceof QueueChecksBusy)
    }
    assert.equal(broker.opened(), 32, 'only the first 32 checks reach the broker')
    assert.equal(broker.opened(), 32)
    void checker.state('svc0_requests')
    assert.equal(broker.opened(), 32, 'a second request for a name being checked joins that check')
  })

  it('says the broker cannot be asked when it is not connected', async () => {
    const checker = new QueueChecker(1000, pino({ level: 'silent' }))
    await assert.rejects(Promise.resolve(checker.state('a_requests')), (err: Error) => !(err instanceof QueueChecksBusy) && /not connected/.test(err.message))
  })
})
