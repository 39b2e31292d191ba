// Step 3: carrying an outcome out, the one place for both call strategies:
// publish what the outcome needs (a reply, a copy), settle the delivery once,
// and keep the books (metrics, suspects expected back for careful mode, the
// in-flight count). Once the outcome's essential publish is done (a reply, or
// a copy the broker confirmed) the delivery is acked whatever happens next:
// giving the original back then would duplicate the message.
import type { ConsumeMessage } from 'amqplib'
import { classify } from '../amqp/errors'
import type { Logger } from 'pino'
import { DEAD_LETTER_EXCHANGE, requestQueue, retryQueue } from '../amqp/topology'
import { deadLetterCopy, republishCopy, type IncomingRequest } from '../amqp/wire'
import type { DequeuerConfig } from '../config/types'
import type { ErrorCode } from '../errors'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import { OPEN, type CallResult } from './breaker'
import type { Delivery } from './consumer'
import type { ControlHeaders, Counts } from './control'
import type { Inflight } from './inflight'
import { jitteredTtl, type Outcome } from './outcome'
import { PublishError, UnroutableError, type Publisher } from './publisher'
import { errorReply, isDurableReplyTo, serviceReply, type Reply } from './reply'
import type { DequeuerTracing } from '../tracing/dequeuer'

export interface SettleDeps {
  readonly cfg: DequeuerConfig
  readonly logger: Logger
  readonly metrics: DequeuerMetrics
  readonly publisher: Publisher
  readonly control: ControlHeaders
  readonly inflight: Inflight
  /** `{service}_requests` */
  readonly queue: string
  /** A suspect copy will come back through the queue (careful mode waits for it). */
  readonly expectSuspect: () => void
  /** Null unless tracing is on (OTEL_*). */
  readonly tracing: DequeuerTracing | null
  /** Deliveries held while a queue their publish needs is missing (see UnroutableWaits). */
  readonly unroutableWaits: UnroutableWaits
}

/**
 * Counts the deliveries held while a queue their publish needs is missing,
 * and bounds them to a quarter of the prefetch: a flood of messages whose
 * `replyTo` names a queue that does not exist must not hold every slot (each
 * would hold one for seconds) while the messages behind it wait.
 */
export class UnroutableWaits {
  held = 0
  readonly max: number

  constructor (prefetch: number) {
    this.max = Math.max(1, Math.floor(prefetch / 4))
  }
}

export interface Settlement {
  readonly d: Delivery
  readonly outcome: Outcome
  /** The decoded request, when it got that far. */
  readonly req: IncomingRequest | null
  /** The call's result, when there was a call. */
  readonly result: CallResult | null
}

/** How long a message whose outcome could not be carried out is held before it goes back to the queue. */
const REQUEUE_AFTER_FAILURE_MS = 1000
/** A publish the outcome needs failed: it is tried again after this long, the wait doubling up to the next. */
const PUBLISH_RETRY_FIRST_MS = 500
const PUBLISH_RETRY_MAX_MS = 8000
/** How long a delivery is held while the publish keeps failing; then it goes back to the queue. */
const PUBLISH_RETRY_BUDGET_MS = 30000
/**
 * The same when no queue took the message: a reply's queue that is missing
 * belongs to a requester that is gone or recovering (an enqueuer declares its
 * results queue again within a second), and a message naming a queue that
 * never existed must not hold its prefetch slot for long.
 */
const UNROUTABLE_RETRY_BUDGET_MS = 5000

export async function settle (deps: SettleDeps, s: Settlement): Promise<void> {
  const { d, req } = s
  const { metrics } = deps
  const tag = d.msg.fields.deliveryTag
  let outcome = s.outcome
  let failure: ErrorCode | null = s.result !== null && s.result !== OPEN && s.result.kind !== 'response' ? s.result.code ?? null : null
  // The service's answer must fit in a broker message: one that cannot is answered now, not retried.
  let reply: Reply | null = null
  if (outcome.kind === 'reply') {
    reply = serviceReply(d.msg, outcome.result, req)
    if (reply.unencodable !== null) {
      outcome = { kind: 'error_reply', code: 'RQ_ERR_REPLY_UNENCODABLE', detail: reply.unencodable }
      reply = null
    }
  }
  if (outcome.kind === 'error_reply') failure ??= outcome.code
  if (failure !== null) metrics.failed(reasonOf(failure))
  let committed = false
  try {
    await carryOutPatiently(deps, d, outcome, reply, req, () => { committed = true })
    committed = true
  } catch (err) {
    if (!committed && replyUnroutable(outcome, err) && d.acker.alive) {
      // The reply's queue is still missing: its requester is gone (an exclusive reply queue dies with it) or the
      // `replyTo` never named a queue. Calling the service again would not bring it back, so the message goes to the
      // dead-letter queue now, not round the queue until its attempts run out; a replay delivers the reply once the
      // queue is there again (an async job's results queue).
      outcome = { kind: 'dead_letter', reason: 'reply_unroutable', code: 'RQ_ERR_REPLY_UNROUTABLE', detail: `no queue '${String(d.msg.properties.replyTo)}' took the reply`, noReply: true }
      try {
        await carryOutPatiently(deps, d, outcome, null, req, () => { committed = true })
        committed = true
      } catch (next) {
        notCompleted(deps, d, outcome, next, committed)
      }
    } else notCompleted(deps, d, outcome, err, committed)
  }
  if (deps.tracing !== null) deps.tracing.settled(d, outcome, committed)
  if (committed) {
    metrics.outcome(outcome.kind)
    if (d.acker.ack(tag)) metrics.acked()
  } else {
    metrics.outcome('returned')
    metrics.requeued('publish_failed')
    // Held a moment first, so a broker that keeps refusing cannot turn this into a tight loop.
    await new Promise((resolve) => setTimeout(resolve, REQUEUE_AFTER_FAILURE_MS))
    d.acker.requeue(tag)
  }
  if (outcome.kind !== 'requeue') metrics.processing((performance.now() - d.receivedAt) / 1000)
  deps.inflight.leave()
}

function notCompleted (deps: SettleDeps, d: Delivery, outcome: Outcome, err: unknown, committed: boolean): void {
  const correlationId = d.msg.properties.correlationId
  const ids = deps.tracing === null ? null : deps.tracing.logIds(d)
  if (!(err instanceof PublishError)) deps.logger.error({ err: (err as Error).stack, correlationId, outcome: outcome.kind, ...ids }, 'unexpected error completing a message')
  else if (!committed) deps.logger.warn({ err: err.message, correlationId, outcome: outcome.kind, ...ids }, 'cannot complete message; returning it to the queue')
}

/** The outcome's reply, its one publish, came back from a queue that is missing (only confirmed, named-queue replies can). */
function replyUnroutable (outcome: Outcome, err: unknown): boolean {
  return (outcome.kind === 'reply' || outcome.kind === 'error_reply') && err instanceof PublishError && err.cause instanceof UnroutableError
}

/**
 * Carries the outcome out. A publish that fails before anything is committed
 * (a nack, no confirm in time, a reply's queue missing for a moment, no
 * publishing channel) is tried again, the delivery held, for as long as its
 * channel lives and within a budget. Giving the delivery back instead would
 * call the service again, and the return counts as an attempt (quorum queues
 * count every nack before RabbitMQ 4.3; on classic queues it comes back
 * redelivered, and is counted as a lost delivery): a broker hiccup of a few
 * seconds would dead-letter messages the service had answered.
 */
function carryOutPatiently (deps: SettleDeps, d: Delivery, outcome: Outcome, reply: Reply | null, req: IncomingRequest | null, commit: () => void): Promise<void> {
  let committed = false
  const step = (): Promise<void> => carryOut(deps, d, outcome, reply, req, () => { committed = true; commit() })
  // The first try is made here: the patient loop (and its closures) is for the rare publish that fails.
  return step().catch((err: unknown) => retryPatiently(deps, d, outcome, step, () => committed, err))
}

/** After `step` failed with `firstErr`, runs it again (see carryOutPatiently) until it succeeds; then throws its last error. */
async function retryPatiently (deps: SettleDeps, d: Delivery, outcome: Outcome, step: () => Promise<void>, committed: () => boolean, firstErr: unknown): Promise<void> {
  const waits = deps.unroutableWaits
  let holdsWait = false
  const started = Date.now()
  let err = firstErr
  try {
    for (let delay = PUBLISH_RETRY_FIRST_MS; ; delay = Math.min(delay * 2, PUBLISH_RETRY_MAX_MS)) {
      // Not again: what a retry cannot change (a message the encoder cannot carry), or a delivery the broker took back.
      if (committed() || !(err instanceof PublishError) || !classify(err).retryable || !d.acker.alive) throw err
      const unroutable = err.cause instanceof UnroutableError
      const budget = unroutable ? UNROUTABLE_RETRY_BUDGET_MS : PUBLISH_RETRY_BUDGET_MS
      if (Date.now() + delay - started > budget) throw err
      if (unroutable && !holdsWait) {
        // Only so many deliveries wait for missing queues at once (UnroutableWaits).
        if (waits.held >= waits.max) throw err
        waits.held++
        holdsWait = true
      }
      if (delay === PUBLISH_RETRY_FIRST_MS) {
        deps.logger.warn({ err: err.message, correlationId: d.msg.properties.correlationId, outcome: outcome.kind, ...(deps.tracing === null ? null : deps.tracing.logIds(d)) }, 'cannot publish what a message\'s outcome needs; holding the message and trying again')
      }
      deps.metrics.publishRetried()
      await new Promise((resolve) => setTimeout(resolve, delay))
      try {
        await step()
        return
      } catch (next) {
        err = next
      }
    }
  } finally {
    if (holdsWait) waits.held--
  }
}

/** Runs `step` until it succeeds, again after each failed publish (see carryOutPatiently); then throws its last error. */
async function patiently (deps: SettleDeps, d: Delivery, outcome: Outcome, step: () => Promise<void>): Promise<void> {
  try {
    await step()
  } catch (err) {
    await retryPatiently(deps, d, outcome, step, () => false, err)
  }
}

async function carryOut (deps: SettleDeps, d: Delivery, outcome: Outcome, reply: Reply | null, req: IncomingRequest | null, commit: () => void): Promise<void> {
  const msg = d.msg
  const { cfg, metrics, publisher } = deps
  switch (outcome.kind) {
    case 'reply':
      await publishReply(deps, d, reply!)
      commit()
      metrics.processed(outcome.result.status)
      return
    case 'error_reply':
      await publishReply(deps, d, errorReply(msg, outcome.code, outcome.detail, req))
      commit()
      return
    case 'retry': {
      const counts = copyCounts(deps, msg)
      const copy = republishCopy(msg, { ...counts, attempts: counts.attempts + 1, errorCode: outcome.code, errorMessage: outcome.detail })
      // Each delay has its own queue; the jitter spreads retries that failed together.
      copy.options.expiration = String(jitteredTtl(outcome.delayMs))
      await publisher.publish('', retryQueue(cfg.service, outcome.delayMs), deps.control.sign(copy), { confirm: true })
      commit()
      metrics.retried(reasonOf(outcome.code))
      return
    }
    case 'dead_letter': {
      const counts = copyCounts(deps, msg)
      const attempts = outcome.reason === 'max_attempts' ? counts.attempts + 1 : counts.attempts
      const copy = deadLetterCopy(msg, { ...counts, attempts, errorCode: outcome.code, errorMessage: outcome.detail, reason: outcome.reason, originalQueue: deps.queue })
      // An async job hears only through its results queue, so its error reply goes first and is tried again like
      // the copy: a job must not stay pending behind a dead letter. Past the budget the copy goes anyway (the job
      // then ends when the message is replayed): holding it back would return it to the queue, round and round.
      // A waiting client's reply is a courtesy (its timeout answers).
      const replies = outcome.noReply !== true
      const essential = replies && isDurableReplyTo(msg.properties.replyTo as string | undefined)
      if (essential) {
        await patiently(deps, d, outcome, () => publishReply(deps, d, errorReply(msg, outcome.code, outcome.detail, req))).catch((err: Error) => {
          deps.logger.error({ err: err.message, correlationId: msg.properties.correlationId, replyTo: msg.properties.replyTo }, 'cannot publish the error reply of a dead-lettered message to its durable reply queue; its job stays pending until the message is replayed')
        })
      }
      await publisher.publish(DEAD_LETTER_EXCHANGE, requestQueue(cfg.service), copy, { confirm: true })
      commit()
      metrics.deadLettered(outcome.reason)
      deps.logger.warn({ correlationId: msg.properties.correlationId, reason: outcome.reason, code: outcome.code, detail: outcome.detail, ...(deps.tracing === null ? null : deps.tracing.logIds(d)) }, 'message dead-lettered')
      // A waiting client hears now, not at its timeout.
      if (replies && !essential) await publishReply(deps, d, errorReply(msg, outcome.code, outcome.detail, req)).catch(() => {})
      return
    }
    case 'requeue': {
      const counts = copyCounts(deps, msg)
      await publisher.publish('', deps.queue, deps.control.sign(republishCopy(msg, counts)), { confirm: true })
      commit()
      metrics.requeued(outcome.reason)
      // A suspect given back comes back: careful mode waits for it.
      if (counts.lostDeliveries > 0) deps.expectSuspect()
      return
    }
    case 'recount': {
      const counts = copyCounts(deps, msg)
      const copy = republishCopy(msg, { ...counts, attempts: counts.attempts + 1, lostDeliveries: counts.lostDeliveries + 1, errorCode: 'RQ_ERR_REDELIVERY_LIMIT', errorMessage: 'an earlier delivery ended without an answer' })
      await publisher.publish('', deps.queue, deps.control.sign(copy), { confirm: true })
      commit()
      metrics.requeued('redelivered')
      deps.expectSuspect()
      return
    }
    case 'streamed':
      // Already sent, message by message (stream.ts).
      commit()
      metrics.processed(outcome.result.status)
      return
    case 'drop':
      commit()
      metrics.dropped(outcome.reason)
      deps.logger.debug({ correlationId: msg.properties.correlationId }, 'expired message dropped')
  }
}

/** Publishes a reply to the message's replyTo, if any. Replies to durable queues (async jobs) wait for the confirm. */
function publishReply (deps: SettleDeps, d: Delivery, reply: Reply): Promise<void> {
  const replyTo = d.msg.properties.replyTo as string | undefined
  if (replyTo === undefined || replyTo === '') return Promise.resolve()
  const confirm = isDurableReplyTo(replyTo)
  if (deps.tracing === null) return deps.publisher.publish('', replyTo, reply.message, confirm ? CONFIRMED : UNCONFIRMED)
  return deps.tracing.replying(d, replyTo, () => deps.publisher.publish('', replyTo, reply.message, confirm ? CONFIRMED : UNCONFIRMED))
}

const CONFIRMED = { confirm: true } as const
const UNCONFIRMED = { confirm: false } as const

/**
 * The counts a copy carries (a reply, nearly every message, reads none). A
 * message whose counts cannot be read (it is being dead-lettered as malformed)
 * carries none, rather than failing its settling for ever.
 */
function copyCounts (deps: SettleDeps, msg: ConsumeMessage): { attempts: number, lostDeliveries: number, firstAttemptAt: number } {
  let read: Counts
  try {
    read = deps.control.counts(msg, deps.cfg.queueType === 'quorum')
  } catch {
    read = { attempts: 0, lostDeliveries: 0, firstAttemptAt: null }
  }
  return { attempts: read.attempts, lostDeliveries: read.lostDeliveries, firstAttemptAt: read.firstAttemptAt ?? Date.now() }
}

export function reasonOf (code: ErrorCode): string {
  return code.replace(/^RQ_ERR_/, '').toLowerCase()
}
