// Step 1 of a delivery's life: the checks that need no service call (size,
// parse, attempt count, deadline, pause). Returns a message ready to call,
// or the Outcome that ends it here. Reads state, changes none but metrics.
import { MalformedMessageError, decodeRequest, type DeadLetterReason, type IncomingRequest } from '../amqp/wire'
import type { Logger } from 'pino'
import type { DequeuerConfig } from '../config/types'
import type { ErrorCode } from '../errors'
import { joinDownstreamPath } from '../http/target'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { Delivery } from './consumer'
import type { ControlHeaders } from './control'
import type { ForwardRequest } from './call-result'
import type { Gate } from './gate'
import type { Outcome } from './outcome'

/** A delivery that passed the checks and is ready to be forwarded. */
export interface Prepared {
  readonly d: Delivery
  readonly req: IncomingRequest
  /** This delivery's attempt number, 1-based. */
  readonly attempt: number
  /** An earlier delivery of it was lost: it may be the message that crashed the dequeuer. */
  readonly suspect: boolean
  readonly forward: ForwardRequest
}

export interface PrepareDeps {
  readonly cfg: DequeuerConfig
  readonly logger: Logger
  /** Debug logging is on: per-message lines are built only then. */
  readonly debug: boolean
  readonly metrics: DequeuerMetrics
  readonly gate: Gate
  readonly control: ControlHeaders
  /** True while a suspect waits to run or runs alone: anything else goes back uncounted. */
  readonly holding: () => boolean
}

export function isPrepared (x: Prepared | Outcome): x is Prepared {
  return 'forward' in x
}

/**
 * prepare() with a guarantee: it runs inside the broker client's delivery
 * callback, where a throw would close the channel. A message that trips an
 * unexpected error is dead-lettered (with the error), so it cannot loop.
 */
export function safePrepare (deps: PrepareDeps, d: Delivery): Prepared | Outcome {
  try {
    return prepare(deps, d)
  } catch (err) {
    deps.logger.error({ err: (err as Error).stack, correlationId: d.msg.properties.correlationId }, 'unexpected error reading a message')
    return deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', `relayq could not read the message: ${(err as Error).message}`)
  }
}

// A publisher sets the timestamp, so it is only a claim: one from 1970 or next
// year would skew the queue-latency histogram's sum for good. Clocks disagree
// by seconds, messages may wait for days (jobs); beyond these it is ignored.
const MAX_CLOCK_AHEAD_SECONDS = 60
const MAX_WAIT_SECONDS = 31 * 24 * 3600

/** Seconds a message waited in the queue, from its timestamp (epoch seconds); null when absent or implausible. */
export function queueWaitSeconds (timestamp: unknown, nowMs: number): number | null {
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp <= 0) return null
  const waited = nowMs / 1000 - timestamp
  if (waited < -MAX_CLOCK_AHEAD_SECONDS || waited > MAX_WAIT_SECONDS) return null
  return Math.max(0, waited)
}

export function prepare (deps: PrepareDeps, d: Delivery): Prepared | Outcome {
  const { cfg, metrics } = deps
  const msg = d.msg
  const waited = queueWaitSeconds(msg.properties.timestamp, Date.now())
  if (waited !== null) metrics.queueLatency(waited)
  if (msg.content.length > cfg.maxMessageBytes) return deadLetter('too_large', 'RQ_ERR_MESSAGE_TOO_LARGE', `message of ${msg.content.length} bytes exceeds DEQUEUER_MAX_MESSAGE_BYTES`)
  let req: IncomingRequest
  try {
    req = decodeRequest(msg)
  } catch (err) {
    if (err instanceof MalformedMessageError) return deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', err.message)
    throw err
  }
  const quorum = cfg.queueType === 'quorum'
  const { attempts: prior, lostDeliveries: lost } = deps.control.counts(msg, quorum)
  if (deps.debug) deps.logger.debug({ tag: msg.fields.deliveryTag, correlationId: req.correlationId, redelivered: msg.fields.redelivered, prior, lost, paused: deps.gate.describe() }, 'delivery')
  if (msg.fields.redelivered) metrics.redelivered()
  if (!quorum && msg.fields.redelivered) {
    // A classic queue counts nothing: the delivery that ended without an ack
    // (a crash, a lost channel) is counted here by publishing a copy with one
    // more attempt, so a message that kills the dequeuer cannot loop for ever.
    if (prior + 1 >= cfg.maxAttempts) return deadLetter('redelivery_limit', 'RQ_ERR_REDELIVERY_LIMIT', `delivered ${prior + 1} times without an answer`)
    return { kind: 'recount' }
  }
  if (quorum && prior >= cfg.maxAttempts) return deadLetter('redelivery_limit', 'RQ_ERR_REDELIVERY_LIMIT', `delivered ${prior} times without an answer`)
  if (req.deadline !== null && req.deadline <= Date.now()) {
    if (cfg.expired === 'drop') return { kind: 'drop', reason: 'expired' }
    return deadLetter('expired', 'RQ_ERR_DEADLINE_EXCEEDED', 'the caller\'s deadline passed before the request was forwarded')
  }
  if (!deps.gate.open) return { kind: 'requeue', reason: deps.gate.has('draining') ? 'draining' : deps.gate.has('breaker') ? 'breaker_open' : 'paused' }
  if (deps.holding()) return { kind: 'requeue', reason: 'isolating' }
  const timeoutAt = Date.now() + cfg.downstreamTimeoutMs
  return {
    d,
    req,
    attempt: prior + 1,
    suspect: lost > 0,
    forward: {
      method: req.method,
      path: joinDownstreamPath(cfg.downstreamUrl, req.path),
      headers: req.headers,
      body: req.body,
      deadline: req.deadline === null ? timeoutAt : Math.min(req.deadline, timeoutAt),
    },
  }
}

export function deadLetter (reason: DeadLetterReason, code: ErrorCode, detail: string): Outcome {
  return { kind: 'dead_letter', reason, code, detail }
}
