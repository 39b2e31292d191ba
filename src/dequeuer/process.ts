// What happens to one delivery, in order: checks that need no service call
// (size, parse, attempt count, deadline, pause), the call through the
// breaker, the decision, and carrying it out. Whatever happens, a delivery is
// settled exactly once, and only after whatever it publishes is out.
import type { ConsumeMessage } from 'amqplib'
import { DEAD_LETTER_EXCHANGE, requestQueue, retryQueue } from '../amqp/topology'
import {
  DIRECT_REPLY_TO, MalformedMessageError, deadLetterCopy, decodeRequest, encodeResponse, firstAttemptAt,
  lostDeliveries, priorAttempts, republishCopy, type DeadLetterReason, type IncomingRequest, type Publishable,
} from '../amqp/wire'
import { errorBody, statusOf, type ErrorCode } from '../errors'
import { responseHeaderTable } from '../http/headers'
import { joinDownstreamPath } from '../http/target'
import { OPEN } from './breaker'
import type { Delivery } from './consumer'
import type { DequeuerContext } from './context'
import type { ForwardRequest, ForwardResult } from './forward'
import { decideAfterAttempt, jitteredTtl, type Outcome } from './outcome'
import { PublishError } from './publisher'

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

export function processDelivery (ctx: DequeuerContext, d: Delivery): void {
  ctx.inflight++
  const checked = safePrepare(ctx, d)
  if (!('forward' in checked)) {
    void settle(ctx, d, checked, null)
    return
  }
  const batcher = ctx.batcher
  // A suspect runs alone: if it crashes the dequeuer again, no other message is caught with it.
  if (checked.suspect) void ctx.isolation.runSuspect(() => batcher === null ? forwardAndSettle(ctx, checked) : batcher.one(checked))
  else if (batcher !== null) batcher.add(checked)
  else void forwardAndSettle(ctx, checked).then(() => ctx.isolation.cleanRun())
}

async function forwardAndSettle (ctx: DequeuerContext, p: Prepared): Promise<void> {
  const startedAt = performance.now()
  let outcome: Outcome
  try {
    const result = await ctx.breaker.run(() => ctx.forwarder.forward(p.forward))
    ctx.metrics.downstream((performance.now() - startedAt) / 1000)
    outcome = afterCall(ctx, p, result)
  } catch (err) {
    ctx.logger.error({ err: (err as Error).stack, correlationId: p.req.correlationId }, 'unexpected error calling the service')
    outcome = deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', `relayq could not process the message: ${(err as Error).message}`)
  }
  await settle(ctx, p.d, outcome, p.req)
}

/** The outcome of one call (single or batch item). */
export function afterCall (ctx: DequeuerContext, p: Prepared, result: ForwardResult | typeof OPEN): Outcome {
  if (result === OPEN) return { kind: 'requeue', reason: 'breaker_open' }
  if (result.kind === 'error') ctx.metrics.failed(reasonOf(result.code))
  // A call cut off at the caller's deadline ends at the deadline, whatever the clock says (timers fire early or late).
  const cutOff = result.kind === 'error' && result.code === 'RQ_ERR_DOWNSTREAM_TIMEOUT' && p.forward.deadline === p.req.deadline
  return decideAfterAttempt(result, p.attempt, ctx.cfg, p.req.deadline, cutOff ? Math.max(Date.now(), p.forward.deadline) : Date.now())
}

/**
 * prepare() with a guarantee: it runs inside the broker client's delivery
 * callback, where a throw would close the channel. A message that trips an
 * unexpected error is dead-lettered (with the error), so it cannot loop.
 */
export function safePrepare (ctx: DequeuerContext, d: Delivery): Prepared | Outcome {
  try {
    return prepare(ctx, d)
  } catch (err) {
    ctx.logger.error({ err: (err as Error).stack, correlationId: d.msg.properties.correlationId }, 'unexpected error reading a message')
    return deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', `relayq could not read the message: ${(err as Error).message}`)
  }
}

/** Checks before any call to the service; an Outcome when the message ends here. */
export function prepare (ctx: DequeuerContext, d: Delivery): Prepared | Outcome {
  const { cfg } = ctx
  const msg = d.msg
  const ts = msg.properties.timestamp as number | undefined
  if (ts !== undefined && ts > 0) ctx.metrics.queueLatency(Math.max(0, Date.now() / 1000 - ts))
  if (msg.content.length > cfg.maxMessageBytes) return deadLetter('too_large', 'RQ_ERR_MESSAGE_TOO_LARGE', `message of ${msg.content.length} bytes exceeds DEQUEUER_MAX_MESSAGE_BYTES`)
  let req: IncomingRequest
  try {
    req = decodeRequest(msg)
  } catch (err) {
    if (err instanceof MalformedMessageError) return deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', err.message)
    throw err
  }
  const quorum = cfg.queueType === 'quorum'
  const prior = priorAttempts(msg, quorum)
  if (ctx.debug) ctx.logger.debug({ tag: msg.fields.deliveryTag, correlationId: req.correlationId, redelivered: msg.fields.redelivered, prior, lost: lostDeliveries(msg, quorum), paused: ctx.gate.describe() }, 'delivery')
  if (msg.fields.redelivered) ctx.metrics.redelivered()
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
  if (!ctx.gate.open) return { kind: 'requeue', reason: ctx.gate.has('draining') ? 'draining' : ctx.gate.has('breaker') ? 'breaker_open' : 'paused' }
  const timeoutAt = Date.now() + cfg.downstreamTimeoutMs
  return {
    d,
    req,
    attempt: prior + 1,
    suspect: lostDeliveries(msg, quorum) > 0,
    forward: {
      method: req.method,
      path: joinDownstreamPath(cfg.downstreamUrl, req.path),
      headers: req.headers,
      body: req.body,
      deadline: req.deadline === null ? timeoutAt : Math.min(req.deadline, timeoutAt),
    },
  }
}

function deadLetter (reason: DeadLetterReason, code: ErrorCode, detail: string): Outcome {
  return { kind: 'dead_letter', reason, code, detail }
}

/** How long a message whose outcome could not be carried out is held before it goes back to the queue. */
const REQUEUE_AFTER_FAILURE_MS = 1000

/**
 * Carries an outcome out: publish what it needs, then settle the delivery
 * once. Once the outcome's essential publish is done (a reply, or a copy the
 * broker confirmed) the delivery is acked whatever happens next: giving the
 * original back then would duplicate the message.
 */
export async function settle (ctx: DequeuerContext, d: Delivery, outcome: Outcome, req: IncomingRequest | null): Promise<void> {
  const tag = d.msg.fields.deliveryTag
  let committed = false
  try {
    await carryOut(ctx, d.msg, outcome, req, () => { committed = true })
    committed = true
  } catch (err) {
    const correlationId = d.msg.properties.correlationId
    if (!(err instanceof PublishError)) ctx.logger.error({ err: (err as Error).stack, correlationId, outcome: outcome.kind }, 'unexpected error completing a message')
    else if (!committed) ctx.logger.warn({ err: err.message, correlationId, outcome: outcome.kind }, 'cannot complete message; returning it to the queue')
  }
  if (committed) {
    ctx.metrics.outcome(outcome.kind)
    if (d.acker.ack(tag)) ctx.metrics.acked()
  } else {
    ctx.metrics.outcome('returned')
    ctx.metrics.requeued('publish_failed')
    // Held a moment first, so a broker that keeps refusing cannot turn this into a tight loop.
    await new Promise((resolve) => setTimeout(resolve, REQUEUE_AFTER_FAILURE_MS))
    d.acker.requeue(tag)
  }
  if (outcome.kind !== 'requeue') ctx.metrics.processing((performance.now() - d.receivedAt) / 1000)
  ctx.inflight--
  if (ctx.inflight === 0 && ctx.onIdle !== null) ctx.onIdle()
}

async function carryOut (ctx: DequeuerContext, msg: ConsumeMessage, outcome: Outcome, req: IncomingRequest | null, commit: () => void): Promise<void> {
  const { cfg, metrics, publisher } = ctx
  const quorum = cfg.queueType === 'quorum'
  const counts = { attempts: priorAttempts(msg, quorum), lostDeliveries: lostDeliveries(msg, quorum), firstAttemptAt: firstAttemptAt(msg) ?? Date.now() }
  switch (outcome.kind) {
    case 'reply':
      await reply(ctx, msg, serviceReply(msg, outcome.result, req))
      commit()
      metrics.processed(outcome.result.status)
      return
    case 'error_reply':
      await reply(ctx, msg, errorReply(msg, outcome.code, outcome.detail, req))
      commit()
      metrics.failed(reasonOf(outcome.code))
      return
    case 'retry': {
      const copy = republishCopy(msg, { ...counts, attempts: counts.attempts + 1, errorCode: outcome.code, errorMessage: outcome.detail })
      // Each delay has its own queue; the jitter spreads retries that failed together.
      copy.options.expiration = String(jitteredTtl(outcome.delayMs))
      await publisher.publish('', retryQueue(cfg.service, outcome.delayMs), copy, { confirm: true })
      commit()
      metrics.retried(reasonOf(outcome.code))
      return
    }
    case 'dead_letter': {
      const attempts = outcome.reason === 'max_attempts' ? counts.attempts + 1 : counts.attempts
      const copy = deadLetterCopy(msg, { ...counts, attempts, errorCode: outcome.code, errorMessage: outcome.detail, reason: outcome.reason, originalQueue: ctx.queue })
      await publisher.publish(DEAD_LETTER_EXCHANGE, requestQueue(cfg.service), copy, { confirm: true })
      commit()
      metrics.deadLettered(outcome.reason)
      ctx.logger.warn({ correlationId: msg.properties.correlationId, service: cfg.service, reason: outcome.reason, code: outcome.code, detail: outcome.detail }, 'message dead-lettered')
      // A waiting client hears now, not at its timeout.
      if (outcome.noReply !== true) await reply(ctx, msg, errorReply(msg, outcome.code, outcome.detail, req)).catch(() => {})
      return
    }
    case 'requeue':
      await publisher.publish('', ctx.queue, republishCopy(msg, counts), { confirm: true })
      commit()
      metrics.requeued(outcome.reason)
      return
    case 'recount': {
      const copy = republishCopy(msg, { ...counts, attempts: counts.attempts + 1, lostDeliveries: counts.lostDeliveries + 1, errorCode: 'RQ_ERR_REDELIVERY_LIMIT', errorMessage: 'an earlier delivery ended without an answer' })
      await publisher.publish('', ctx.queue, copy, { confirm: true })
      commit()
      metrics.requeued('redelivered')
      return
    }
    case 'drop':
      commit()
      metrics.dropped(outcome.reason)
      ctx.logger.debug({ correlationId: msg.properties.correlationId }, 'expired message dropped')
  }
}

function serviceReply (msg: ConsumeMessage, r: Extract<ForwardResult, { kind: 'response' }>, req: IncomingRequest | null): Publishable {
  const { table, contentType } = responseHeaderTable(r.rawHeaders, req?.method === 'HEAD')
  return encodeResponse({
    status: r.status,
    headers: table,
    body: r.body,
    correlationId: msg.properties.correlationId as string | undefined,
    contentType,
    persistent: isDurableReplyTo(msg.properties.replyTo as string | undefined),
    jobId: req?.jobId,
  })
}

function errorReply (msg: ConsumeMessage, code: ErrorCode, detail: string, req: IncomingRequest | null): Publishable {
  return encodeResponse({
    status: statusOf(code),
    headers: { 'content-type': 'application/json' },
    body: errorBody(code, detail),
    correlationId: msg.properties.correlationId as string | undefined,
    contentType: 'application/json',
    errorCode: code,
    persistent: isDurableReplyTo(msg.properties.replyTo as string | undefined),
    jobId: req?.jobId,
  })
}

/** Publishes a reply to the message's replyTo, if any. Replies to durable queues (async jobs) wait for the confirm. */
async function reply (ctx: DequeuerContext, msg: ConsumeMessage, message: Publishable): Promise<void> {
  const replyTo = msg.properties.replyTo as string | undefined
  if (replyTo === undefined || replyTo === '') return
  const confirm = isDurableReplyTo(replyTo)
  try {
    await ctx.publisher.publish('', replyTo, message, { confirm })
  } catch (err) {
    if (!(err instanceof PublishError) || !/RangeError|out of range|too (large|long)/i.test(err.message)) throw err
    // The service's headers cannot be encoded (e.g. over 64 KiB): tell the client why.
    await ctx.publisher.publish('', replyTo, errorReply(msg, 'RQ_ERR_RESPONSE_TOO_LARGE', 'the service response headers cannot be carried', null), { confirm })
  }
}

function isDurableReplyTo (replyTo: string | undefined): boolean {
  return replyTo !== undefined && !replyTo.startsWith(DIRECT_REPLY_TO)
}

function reasonOf (code: ErrorCode): string {
  return code.replace(/^RQ_ERR_/, '').toLowerCase()
}
