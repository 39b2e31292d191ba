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

// A broker that answers each check with the queue's current consumer count (or 404 when `exists` is false).
function liveBroker (): { conn: ChannelModel, checks: () => number, queue: { exists: boolean, consumers: number } } {
  let checks = 0
  const queue = { exists: true, consumers: 1 }
  const conn = {
    createChannel: async () => ({
      on: () => {},
      close: async () => {},
      checkQueue: async () => {
        checks++
        if (!queue.exists) throw Object.assign(new Error('Channel closed by server: 404 (NOT-FOUND) with message "NOT_FOUND - no queue"'), { code: 404 })
        return { consumerCount: queue.consumers }
      },
    }),
  }
  return { conn: conn as unknown as ChannelModel, checks: () => checks, queue }
}

describe('queue checker', () => {
  it('never admits on an entry older than the TTL: the last consumer left, the next request learns it', async () => {
    let now = 0
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), () => now)
    const broker = liveBroker()
    checker.attach(broker.conn)
    assert.equal((await checker.state('a_requests')).consumers, 1)
    broker.queue.consumers = 0
    now = 60_000
    const state = checker.state('a_requests')
    assert.ok(state instanceof Promise, 'a stale entry must not be served: the request waits for the check')
    assert.equal((await state).consumers, 0)
  })

  it('within the TTL the cached answer serves, refreshed ahead of expiry so steady traffic never waits', async () => {
    let now = 0
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), () => now)
    const broker = liveBroker()
    checker.attach(broker.conn)
    await checker.state('a_requests')
    now = 900
    assert.deepEqual(checker.state('a_requests'), { exists: true, consumers: 1 })
    assert.equal(broker.checks(), 1, 'young entry: no check')
    now = 1500
    assert.deepEqual(checker.state('a_requests'), { exists: true, consumers: 1 }, 'past half the TTL: served, and refreshed behind it')
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(broker.checks(), 2)
    now = 3000
    assert.deepEqual(checker.state('a_requests'), { exists: true, consumers: 1 }, 'the refresh at 1.5 s keeps it fresh until 3.5 s')
  })

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
