import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ChannelModel } from 'amqplib'
import pino from 'pino'
import { QueueCheckTimeout, QueueChecker, QueueChecksBusy } from '../../src/enqueuer/queue-check'

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
  it('a reply from a service at zero is believed until the next check (sawConsumer), and never makes a missing queue exist', async () => {
    const now = 0
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { now: () => now })
    const broker = liveBroker()
    broker.queue.consumers = 0
    checker.attach(broker.conn)
    assert.equal((await checker.state('a_requests')).consumers, 0)
    const checks = broker.checks()
    checker.sawConsumer('a_requests')
    assert.deepEqual(checker.state('a_requests'), { exists: true, consumers: 1 }, 'served from the cache, no check')
    assert.equal(broker.checks(), checks)
    checker.sawConsumer('b_requests')
    assert.equal((await checker.state('b_requests')).consumers, 0, 'an unknown queue is asked, not assumed')
  })

  it('a queue seen moments ago that now answers 404 is unavailable (503, retry), not gone; after a minute it is gone', async () => {
    let now = 0
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { now: () => now })
    const broker = liveBroker()
    checker.attach(broker.conn)
    assert.equal((await checker.state('a_requests')).exists, true)
    broker.queue.exists = false
    now = 10_000
    assert.deepEqual(await checker.state('a_requests'), { exists: true, consumers: 0, unavailable: true })
    // Still unavailable while it stays missing within the grace...
    now = 50_000
    assert.equal((await checker.state('a_requests')).unavailable, true)
    // ...and back as soon as it answers again (its node is back, or it was declared again).
    broker.queue.exists = true
    now = 51_000
    assert.deepEqual(await checker.state('a_requests'), { exists: true, consumers: 1 })
    // Missing for longer than the grace: gone.
    broker.queue.exists = false
    now = 54_000
    assert.equal((await checker.state('a_requests')).unavailable, true)
    now = 200_000
    assert.deepEqual(await checker.state('a_requests'), { exists: false, consumers: 0 })
    // A name never seen is simply missing.
    assert.deepEqual(await checker.state('never_requests'), { exists: false, consumers: 0 })
  })

  it('bounds a check on a stalled connection: the waiting request is refused at the timeout, not when heartbeats fail', async () => {
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { checkTimeoutMs: 50 })
    const broker = stalledBroker()
    checker.attach(broker.conn)
    const started = Date.now()
    await assert.rejects(Promise.resolve(checker.state('a_requests')), QueueCheckTimeout)
    assert.ok(Date.now() - started < 5000)
    // The next request asks again instead of joining a check that will never end.
    await assert.rejects(Promise.resolve(checker.state('a_requests')), QueueCheckTimeout)
    assert.equal(broker.opened(), 2)
  })

  it('never admits on an entry older than the TTL: the last consumer left, the next request learns it', async () => {
    let now = 0
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { now: () => now })
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
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { now: () => now })
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

  it('a flood of missing names never evicts a real service, and checks of new names are rate-limited while known names are not', async () => {
    let now = 0
    const checker = new QueueChecker(60_000, pino({ level: 'silent' }), { now: () => now, maxEntries: 100, newChecksPerSecond: 50 })
    const broker = liveBroker()
    checker.attach(broker.conn)
    assert.equal((await checker.state('real_requests')).consumers, 1)
    broker.queue.exists = false
    let refused = 0
    let missing = 0
    // 1,000 random names over 10 s (the clock advances 10 ms per name).
    for (let i = 0; i < 1000; i++) {
      now += 10
      try {
        const s = await checker.state(`rnd${i}_requests`)
        if (!s.exists) missing++
      } catch (err) {
        assert.ok(err instanceof QueueChecksBusy)
        refused++
      }
    }
    assert.ok(broker.checks() <= 1 + 50 + 10 * 50, `${broker.checks()} broker checks for 1,000 new names in 10 s at 50/s`)
    assert.ok(refused > 0 && missing > 0)
    broker.queue.exists = true
    // The real service is still cached: 1,000 missing names (ten times the room) did not evict it.
    const before = broker.checks()
    assert.deepEqual(checker.state('real_requests'), { exists: true, consumers: 1 })
    assert.equal(broker.checks(), before)
    // Its refresh is never refused, though the new-name budget is spent.
    now += 60_000
    assert.equal((await checker.state('real_requests')).exists, true)
  })

  it('an entry in use is not the one evicted (least recently used, not first in)', async () => {
    let now = 0
    const checker = new QueueChecker(60_000, pino({ level: 'silent' }), { now: () => now, maxEntries: 3 })
    const broker = liveBroker()
    checker.attach(broker.conn)
    for (const q of ['a', 'b', 'c']) await checker.state(q)
    // Uses within a second of the last move keep their place (a move costs a delete and an insert); later ones move.
    now = 1500
    void checker.state('a')
    await checker.state('d')
    const checks = broker.checks()
    assert.deepEqual(checker.state('a'), { exists: true, consumers: 1 }, 'a was used, so b went')
    assert.equal(broker.checks(), checks)
    assert.ok(checker.state('b') instanceof Promise)
  })

  it('after a reconnect known names are rechecked without counting as new', async () => {
    const checker = new QueueChecker(2000, pino({ level: 'silent' }), { newChecksPerSecond: 1, now: () => 0 })
    const broker = liveBroker()
    checker.attach(broker.conn)
    await checker.state('a_requests')
    checker.attach(broker.conn)
    const s = checker.state('a_requests')
    assert.ok(s instanceof Promise, 'rechecked after a reconnect')
    assert.equal((await s).exists, true, 'not refused, although the one token per second is spent')
  })
})
