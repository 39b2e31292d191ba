// How each message ends: one exhaustive decision, pure, from what happened
// and how many attempts the message has had. The consumer then carries the
// outcome out (publish, then settle) without deciding anything itself.
import type { DeadLetterReason } from '../amqp/wire'
import type { ErrorCode } from '../errors'
import { OPEN, type CallResult } from './breaker'
import type { ForwardResult } from './call-result'

export type Outcome =
  /** The service answered: reply with its answer, ack. */
  | { readonly kind: 'reply', readonly result: Extract<ForwardResult, { kind: 'response' }> }
  /** relayq answers for the service (e.g. its response is too large to publish): reply, ack. */
  | { readonly kind: 'error_reply', readonly code: ErrorCode, readonly detail: string }
  /** No answer this time: republish to the delay queue with one more attempt counted, ack. */
  | { readonly kind: 'retry', readonly code: ErrorCode, readonly detail: string, readonly delayMs: number }
  /** Give up: copy to the dead-letter queue with the reason, tell a waiting client, ack. */
  | { readonly kind: 'dead_letter', readonly reason: DeadLetterReason, readonly code: ErrorCode, readonly detail: string, readonly noReply?: true }
  /** Not this dequeuer's to try now (breaker open, draining, a suspect running alone): back to the queue, no attempt counted. */
  | { readonly kind: 'requeue', readonly reason: 'breaker_open' | 'draining' | 'paused' | 'isolating' }
  /** An expired request with DEQUEUER_EXPIRED=drop: ack and count. */
  | { readonly kind: 'drop', readonly reason: 'expired' }
  /**
   * Classic queues only: an earlier delivery ended without an ack (a crash, a
   * lost channel). Count it by republishing with one more attempt, ack this one.
   */
  | { readonly kind: 'recount' }
  /**
   * The answer went to the requester as a stream (stream.ts): ack, publish
   * nothing. Never retried, even if cut: part of it may have reached the client.
   */
  | { readonly kind: 'streamed', readonly result: Extract<ForwardResult, { kind: 'streamed' }> }

export interface RetryPolicy {
  readonly maxAttempts: number
  readonly retryDelayMs: number
  readonly retryMaxDelayMs: number
  readonly retryStatuses: ReadonlySet<number>
  /** DEQUEUER_EXPIRED: what becomes of a failed message whose caller's deadline comes before its retry. */
  readonly expired?: 'dead-letter' | 'drop'
}

/** What to do after a call: OPEN (the breaker refused it) gives the message back uncounted; `deadline` is the caller's (epoch ms). */
export function decideAfterCall (result: CallResult, attempt: number, policy: RetryPolicy, deadline: number | null = null, now = Date.now()): Outcome {
  if (result === OPEN) return { kind: 'requeue', reason: 'breaker_open' }
  return decideAfterAttempt(result, attempt, policy, deadline, now)
}

/** What to do after an attempt (the `attempt`-th delivery, 1-based) got this result; `deadline` is the caller's (epoch ms). */
export function decideAfterAttempt (result: ForwardResult, attempt: number, policy: RetryPolicy, deadline: number | null = null, now = Date.now()): Outcome {
  const failed = (code: ErrorCode, detail: string): Outcome => failure(code, detail, attempt, policy, deadline, now)
  if (result.kind === 'streamed') return { kind: 'streamed', result }
  if (result.kind === 'response') {
    // A 1xx (or 101) as the final answer desynchronises the client's connection; nothing outside 200-599 is passed on.
    if (!Number.isInteger(result.status) || result.status < 200 || result.status > 599) {
      return { kind: 'error_reply', code: 'RQ_ERR_DOWNSTREAM_STATUS', detail: `the service answered with status ${result.status}, which cannot be a final answer` }
    }
    if (!policy.retryStatuses.has(result.status)) return { kind: 'reply', result }
    return failed('RQ_ERR_DOWNSTREAM_STATUS', `the service answered ${result.status} on attempt ${attempt}`)
  }
  switch (result.code) {
    case 'RQ_ERR_RESPONSE_TOO_LARGE':
      // Retrying would produce the same response; the client hears why at once.
      return { kind: 'error_reply', code: result.code, detail: result.message }
    case 'RQ_ERR_DOWNSTREAM_UNAVAILABLE':
    case 'RQ_ERR_DOWNSTREAM_TIMEOUT':
      return failed(result.code, `${result.message} (attempt ${attempt})`)
  }
}

function failure (code: ErrorCode, detail: string, attempt: number, policy: RetryPolicy, deadline: number | null, now: number): Outcome {
  if (attempt >= policy.maxAttempts) return { kind: 'dead_letter', reason: 'max_attempts', code, detail }
  const delayMs = retryDelay(attempt, policy)
  // The caller gives up before the retry would run (or has: a call cut off at its deadline): a retry serves nobody.
  if (deadline !== null && now + delayMs >= deadline) {
    if (policy.expired === 'drop') return { kind: 'drop', reason: 'expired' }
    const outcome = { kind: 'dead_letter', reason: 'expired', code, detail: `${detail}; not retried, the caller's deadline comes first` } as const
    // Past the deadline the caller's enqueuer answers by itself; a reply would only race it.
    return now >= deadline ? { ...outcome, noReply: true } : outcome
  }
  return { kind: 'retry', code, detail, delayMs }
}

/** Delay after the `attempt`-th failure: base, doubled each time, capped. */
export function retryDelay (attempt: number, policy: Pick<RetryPolicy, 'retryDelayMs' | 'retryMaxDelayMs'>): number {
  return Math.min(policy.retryMaxDelayMs, policy.retryDelayMs * 2 ** Math.max(0, attempt - 1))
}

/** Every delay a retry can use, for declaring one delay queue per delay at start-up. */
export function retryDelays (policy: RetryPolicy): number[] {
  const out = new Set<number>()
  for (let attempt = 1; attempt < policy.maxAttempts; attempt++) out.add(retryDelay(attempt, policy))
  return [...out]
}

/**
 * The per-message TTL inside a delay queue: up to 20% shorter than the queue's
 * TTL, so retries of messages that failed together spread out. Messages only
 * expire at the head of a queue, so the jitter can delay one by at most 20%
 * of the queue's delay, never more.
 */
export function jitteredTtl (delayMs: number, random = Math.random): number {
  return Math.max(1, Math.round(delayMs * (1 - 0.2 * random())))
}
