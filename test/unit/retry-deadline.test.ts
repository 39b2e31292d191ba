// decideAfterAttempt with the caller's deadline: no retry runs after it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decideAfterAttempt, type RetryPolicy } from '../../src/dequeuer/outcome'
import type { ForwardResult } from '../../src/dequeuer/call-result'

const policy: RetryPolicy = { maxAttempts: 3, retryDelayMs: 1000, retryMaxDelayMs: 30000, retryStatuses: new Set([503]) }
const timeout = { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_TIMEOUT', message: 'slow' } as unknown as ForwardResult

describe('retry decision and the caller\'s deadline', () => {
  const now = 1_000_000
  it('retries when the retry runs before the deadline, or when there is none', () => {
    assert.equal(decideAfterAttempt(timeout, 1, policy, now + 1001, now).kind, 'retry')
    assert.equal(decideAfterAttempt(timeout, 1, policy, null, now).kind, 'retry')
  })
  it('dead-letters as expired (or drops, with DEQUEUER_EXPIRED=drop) when the deadline comes first or has passed', () => {
    const late = decideAfterAttempt(timeout, 1, policy, now + 1000, now)
    assert.equal(late.kind, 'dead_letter')
    assert.equal(late.kind === 'dead_letter' && late.reason, 'expired')
    assert.equal(late.kind === 'dead_letter' && late.code, 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    assert.deepEqual(decideAfterAttempt(timeout, 2, { ...policy, expired: 'drop' }, now - 5, now), { kind: 'drop', reason: 'expired' })
  })
  it('sends no reply once the deadline has passed (the caller\'s enqueuer answers by itself), one before it', () => {
    const past = decideAfterAttempt(timeout, 1, policy, now, now)
    assert.equal(past.kind === 'dead_letter' && past.noReply, true)
    const ahead = decideAfterAttempt(timeout, 1, policy, now + 500, now)
    assert.equal(ahead.kind === 'dead_letter' && ahead.noReply, undefined)
  })
  it('the last attempt is still max_attempts', () => {
    const last = decideAfterAttempt(timeout, 3, policy, now - 5, now)
    assert.equal(last.kind === 'dead_letter' && last.reason, 'max_attempts')
  })
})
