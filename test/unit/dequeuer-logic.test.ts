import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { Channel } from 'amqplib'
import { describe, it } from 'node:test'
import { Acker } from '../../src/dequeuer/acker'
import { decideAfterAttempt, jitteredTtl, retryDelay, retryDelays, type RetryPolicy } from '../../src/dequeuer/outcome'
import { ERROR_CODES, statusOf } from '../../src/errors'
import { ServiceBreakers } from '../../src/enqueuer/service-breaker'

const policy: RetryPolicy = { maxAttempts: 3, retryDelayMs: 1000, retryMaxDelayMs: 3000, retryStatuses: new Set([503]) }
const ok = (status: number) => ({ kind: 'response' as const, status, rawHeaders: [], body: Buffer.alloc(0) })

describe('outcome decision', () => {
  it('any service answer is replied, unless listed as retryable', () => {
    for (const s of [200, 204, 301, 404, 500, 502]) assert.equal(decideAfterAttempt(ok(s), 1, policy).kind, 'reply')
    assert.deepEqual(decideAfterAttempt(ok(503), 1, policy), { kind: 'retry', code: 'RQ_ERR_DOWNSTREAM_STATUS', detail: 'the service answered 503 on attempt 1', delayMs: 1000 })
  })
  it('no answer is retried until the last attempt, then dead-lettered', () => {
    const down = { kind: 'error' as const, code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE' as const, message: 'refused' }
    assert.equal(decideAfterAttempt(down, 1, policy).kind, 'retry')
    assert.equal(decideAfterAttempt(down, 2, policy).kind, 'retry')
    const last = decideAfterAttempt(down, 3, policy)
    assert.equal(last.kind, 'dead_letter')
    assert.equal(last.kind === 'dead_letter' && last.reason, 'max_attempts')
  })
  it('a response too large to carry is answered at once, not retried', () => {
    assert.equal(decideAfterAttempt({ kind: 'error', code: 'RQ_ERR_RESPONSE_TOO_LARGE', message: 'big' }, 1, policy).kind, 'error_reply')
  })
  it('delays double up to the cap; one delay queue per distinct delay', () => {
    assert.deepEqual([1, 2, 3, 4].map((a) => retryDelay(a, policy)), [1000, 2000, 3000, 3000])
    assert.deepEqual(retryDelays({ ...policy, maxAttempts: 5 }), [1000, 2000, 3000])
    assert.deepEqual(retryDelays({ ...policy, maxAttempts: 1 }), [])
  })
  it('jitter shortens a delay by at most 20%', () => {
    assert.equal(jitteredTtl(1000, () => 0), 1000)
    assert.equal(jitteredTtl(1000, () => 1), 800)
  })
})

class FakeChannel extends EventEmitter {
  readonly acks: Array<[number, boolean]> = []
  readonly nacks: Array<[number, boolean]> = []
  ack (m: { fields: { deliveryTag: number } }, multiple = false): void { this.acks.push([m.fields.deliveryTag, multiple]) }
  nack (m: { fields: { deliveryTag: number } }, _all: boolean, requeue: boolean): void { this.nacks.push([m.fields.deliveryTag, requeue]) }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('acker', () => {
  it('covers a run of tags below the lowest unsettled one with one multiple ack', async () => {
    const ch = new FakeChannel()
    const acker = new Acker(ch as unknown as Channel)
    for (let t = 1; t <= 6; t++) acker.track(t)
    for (const t of [1, 2, 3, 5]) acker.ack(t)
    await tick()
    assert.deepEqual(ch.acks, [[3, true], [5, false]])
    acker.ack(4)
    acker.ack(6)
    await tick()
    assert.deepEqual(ch.acks.slice(2), [[6, true]])
  })
  it('never settles a tag twice, and drops everything once its channel closed', async () => {
    const ch = new FakeChannel()
    const acker = new Acker(ch as unknown as Channel)
    acker.track(1)
    acker.track(2)
    assert.equal(acker.requeue(1), true)
    assert.equal(acker.ack(1), false)
    ch.emit('close')
    assert.equal(acker.ack(2), false)
    await tick()
    assert.deepEqual(ch.acks, [])
    assert.deepEqual(ch.nacks, [[1, true]])
  })
})

describe('errors', () => {
  it('every code has a 4xx or 5xx status', () => {
    for (const code of ERROR_CODES) assert.ok(statusOf(code) >= 400 && statusOf(code) < 600, code)
  })
})

describe('enqueuer service breaker', () => {
  it('opens after consecutive failures, lets one probe through after the cool-down, closes on success', () => {
    let now = 0
    const seen: string[] = []
    const b = new ServiceBreakers({ enabled: true, threshold: 3, cooldownMs: 1000 }, (_s, state) => seen.push(state), () => now)
    b.failure('s')
    b.failure('s')
    assert.equal(b.admit('s'), 'pass')
    b.failure('s')
    assert.equal(b.admit('s'), 1)
    now = 1000
    assert.equal(b.admit('s'), 'probe')
    assert.equal(typeof b.admit('s'), 'number')
    b.success('s')
    assert.equal(b.admit('s'), 'pass')
    assert.deepEqual(seen, ['open', 'half_open', 'closed'])
  })
  it('a failed probe reopens it; a success resets the count', () => {
    let now = 0
    const b = new ServiceBreakers({ enabled: true, threshold: 2, cooldownMs: 1000 }, () => {}, () => now)
    b.failure('s')
    b.success('s')
    b.failure('s')
    assert.equal(b.admit('s'), 'pass')
    b.failure('s')
    now = 2000
    assert.equal(b.admit('s'), 'probe')
    b.failure('s')
    assert.equal(typeof b.admit('s'), 'number')
  })
})
