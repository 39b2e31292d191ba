// One published request waiting for its outcome. Exactly one of these ends
// it: the reply, a broker nack or return, the confirm or reply timeout, the
// loss of its channel, or the client going away. Every ending goes through
// end(), which frees its timer and table entry (the admission ticket is released when the response closes: handler.ts).
import type { ServerResponse } from 'node:http'
import type { ConsumeMessage } from 'amqplib'
import type { IncomingResponse } from '../amqp/wire'
import { classify } from '../amqp/errors'
import { decodeResponse, type Publishable } from '../amqp/wire'
import { statusOf, type ErrorCode } from '../errors'
import { validContentLength } from '../http/headers'
import { sendError } from '../http/respond'
import type { Ticket } from './admission'
import type { EnqueuerContext } from './context'
import type { RpcChannel, Waiter } from './rpc-channel'
import type { Waiting } from './cold-start'
import { streamKind } from '../amqp/stream-wire'
import { readStreamHead, startClientStream } from './stream'
import type { CallTrace } from '../tracing/enqueuer'

// Every field is always present (undefined when unused): one object shape for every call keeps the reads fast.
export interface CallInit {
  /** relayq's own id on the message; the client sees its own id instead when it sent one. */
  readonly correlationId: string
  /** The client's x-correlation-id (or x-request-id), returned and logged. */
  readonly clientId: string | undefined
  readonly service: string
  readonly queue: string
  readonly res: ServerResponse
  readonly isHead: boolean
  readonly startedAt: number
  /** Absolute reply deadline, epoch ms. */
  readonly deadline: number
  readonly timeoutMs: number
  /** What admission gave the request (its slot, a breaker probe, a pending job); released when the call ends. */
  readonly ticket: Ticket
  /** Set for async jobs: answer 202 once the broker confirms, do not wait for a reply. */
  readonly onConfirmed: ((call: Call) => void) | undefined
  /** Hears how the call ended (an idempotency key stores the answer). */
  readonly observer: CallObserver | undefined
  /** Published while its service had no consumer (ENQUEUER_NO_CONSUMERS=wait). */
  readonly coldStart: Waiting | undefined
  /** The publish and reply-wait spans, when tracing is on. */
  readonly trace: CallTrace | undefined
}

export interface CallObserver {
  replied: (reply: IncomingResponse) => void
  /** Ended without a reply: a relayq error, or null when the client went away. */
  unanswered: (code: ErrorCode | null, channel: RpcChannel | null, correlationId: string) => void
}

export class Call implements Waiter {
  readonly correlationId: string
  private confirmed = false
  private done = false
  private timer: NodeJS.Timeout | null = null
  private channel: RpcChannel | null = null
  /** The caller's deadline comes before ENQUEUER_PUBLISH_TIMEOUT_MS: the first timer is the deadline. */
  private deadlineFirst = false

  constructor (private readonly ctx: EnqueuerContext, readonly init: CallInit) {
    this.correlationId = init.correlationId
  }

  get finished (): boolean {
    return this.done
  }

  start (channel: RpcChannel, message: Publishable): void {
    this.channel = channel
    const untilDeadline = this.init.deadline - Date.now()
    this.deadlineFirst = untilDeadline <= this.ctx.config.publishTimeoutMs
    this.timer = setTimeout(onTimer, Math.max(1, Math.min(this.ctx.config.publishTimeoutMs, untilDeadline)), this)
    try {
      channel.publish(this.init.queue, message, this)
    } catch (err) {
      // Thrown from an event callback, this would end the process; nothing was sent.
      if (err instanceof RangeError) {
        this.fail('RQ_ERR_HEADERS_UNENCODABLE', 'the request headers cannot be carried in a broker message (a header name over 255 bytes, or over 64 KiB of headers)')
        return
      }
      this.ctx.logger.error({ err: (err as Error).message, service: this.init.service, correlationId: this.correlationId, clientId: this.init.clientId, ...this.init.trace?.logIds() }, 'publish failed')
      this.fail('RQ_ERR_INTERNAL', 'the request could not be published')
    }
  }

  onConfirm (err: Error | null): void {
    if (this.done) return
    if (err !== null) {
      // amqplib fails every unconfirmed publish with "channel closed" when the
      // channel goes away; only "message nacked" is the broker refusing it.
      if (classify(err).kind === 'nacked') this.fail('RQ_ERR_PUBLISH_NACKED', 'the broker refused the message', 1)
      else this.onChannelLost()
      return
    }
    this.confirmed = true
    this.init.trace?.confirmed()
    this.ctx.metrics.published(this.init.service, this.elapsedSeconds())
    if (this.init.onConfirmed !== undefined) {
      this.channel?.forget(this.correlationId)
      this.init.onConfirmed(this)
    }
  }

  onReply (msg: ConsumeMessage): void {
    if (this.done) {
      this.ctx.metrics.lateReply()
      return
    }
    if (streamKind(msg) !== null) return this.streamed(msg)
    const reply = decodeResponse(msg)
    // 1xx is never a final answer: written as one it would desynchronise the connection (wire.ts checks it too).
    if (!Number.isInteger(reply.status) || reply.status < 200 || reply.status > 599) {
      this.fail('RQ_ERR_MALFORMED_REPLY', 'the reply does not carry a final HTTP status')
      return
    }
    this.init.trace?.replied(reply.errorCode)
    // decodeResponse kept only headers Node can write and a proxy may pass on (no hop-by-hop, reserved or id headers).
    const headers = reply.headers
    // A keyed request stores what the client gets: the checked headers, not the reply's raw ones.
    this.init.observer?.replied({ ...reply, headers: [...headers] })
    headers.push('x-correlation-id', this.answerId)
    if (this.init.coldStart !== undefined) headers.push('x-relayq-cold-start-ms', String(this.init.coldStart.answered()))
    // 204 and 304 never carry a body or a Content-Length (RFC 9110 8.6, 15.3.5, 15.4.5).
    const bodyless = reply.noBody || reply.status === 204 || reply.status === 304
    // A HEAD answer keeps the service's Content-Length (of the body it did not send), if valid.
    const length = bodyless ? undefined : this.init.isHead ? validContentLength(reply.contentLength) : String(reply.body.length)
    if (length !== undefined) headers.push('content-length', length)
    this.ctx.breakers.success(this.init.service)
    this.end()
    // An error the dequeuer made for the service (it could not reach it, ...) counts as a relayq failure.
    if (reply.errorCode !== undefined) this.ctx.metrics.failed(this.init.service, reply.errorCode)
    this.ctx.metrics.answered(this.init.service, reply.status, this.elapsedSeconds())
    // The admission slot stays held until this is written or abandoned (end() waits on the response).
    this.ctx.sender.send(this.init.res, reply.status, headers, this.init.isHead || bodyless ? null : reply.body)
  }

  /** The reply is the head of a stream: the stream (stream.ts) takes the response over. */
  private streamed (msg: ConsumeMessage): void {
    // A keyed request (its answer is stored whole) and an enqueuer with streams off never announce them.
    if (this.init.observer !== undefined || this.ctx.streamAccept === null) return this.fail('RQ_ERR_MALFORMED_REPLY', 'a streamed reply to a request that did not take streams')
    const head = readStreamHead(msg)
    if (typeof head === 'string') return this.fail('RQ_ERR_MALFORMED_REPLY', head)
    this.ctx.breakers.success(this.init.service)
    this.end()
    startClientStream(this.ctx, this.init, this.channel!, head, this.answerId)
  }

  /**
   * Handling this request's reply (or confirm, or return) threw: this request
   * alone is answered 502, if nothing of its answer was written yet.
   */
  onBadReply (err: unknown): void {
    this.ctx.logger.error({ err: err instanceof Error ? err.message : String(err), service: this.init.service, correlationId: this.correlationId, ...this.init.trace?.logIds() }, 'a reply could not be handled')
    if (!this.done) {
      this.fail('RQ_ERR_MALFORMED_REPLY', 'the reply could not be written as an HTTP response')
      return
    }
    const { res } = this.init
    if (res.destroyed) return
    sendError(res, 'RQ_ERR_MALFORMED_REPLY', 'the reply could not be written as an HTTP response', { correlationId: this.answerId })
  }

  onReturned (): void {
    if (this.done) return
    this.ctx.checker.markMissing(this.init.queue)
    this.fail('RQ_ERR_QUEUE_NOT_FOUND', `queue ${this.init.queue} does not exist`)
  }

  onChannelLost (): void {
    if (this.done) return
    if (this.confirmed) this.fail('RQ_ERR_CONNECTION_LOST', 'the broker connection was lost before the reply arrived; the request may have been processed')
    else this.fail('RQ_ERR_BROKER_UNAVAILABLE', 'the broker connection was lost while publishing', 1)
  }

  onShutdown (): void {
    this.fail('RQ_ERR_DRAINING', 'the enqueuer shut down before the reply arrived', 1)
  }

  /** A job's message is confirmed: answer 202 and stop waiting. */
  accepted (answer: () => void): void {
    if (this.done) return
    this.end()
    this.ctx.metrics.answered(this.init.service, 202, this.elapsedSeconds())
    if (!this.init.res.destroyed) answer()
  }

  /** The client hung up: nobody is left to answer. */
  abandon (): void {
    if (this.done) return
    this.end()
    this.init.observer?.unanswered(null, this.channel, this.correlationId)
    this.ctx.metrics.answered(this.init.service, 499, this.elapsedSeconds())
  }

  onTimerFired (): void {
    this.timer = null
    if (this.done) return
    if (!this.confirmed) {
      // The caller's own deadline (x-relayq-timeout-ms) passed before the confirm came: the message may still reach
      // the queue and run before it expires, so this is the caller's timeout (the request may have run), not a
      // publish the broker failed to take within ENQUEUER_PUBLISH_TIMEOUT_MS.
      if (this.deadlineFirst) this.fail('RQ_ERR_REPLY_TIMEOUT', `no reply within ${this.init.timeoutMs} ms`)
      else this.fail('RQ_ERR_PUBLISH_TIMEOUT', `the broker did not confirm the message within ${this.ctx.config.publishTimeoutMs} ms`, 1)
      return
    }
    const left = this.init.deadline - Date.now()
    if (left > 0) {
      this.timer = setTimeout(onTimer, left, this)
      return
    }
    // A service still at zero is not failing: its pods are starting (or never will), which the breaker cannot cure.
    if (this.init.coldStart?.waiting !== true) this.ctx.breakers.failure(this.init.service)
    this.fail('RQ_ERR_REPLY_TIMEOUT', `no reply within ${this.init.timeoutMs} ms`)
  }

  /** Ends the request with relayq's own error answer. */
  fail (code: ErrorCode, detail: string, retryAfter?: number): void {
    if (this.done) return
    this.init.trace?.failed(code)
    this.end()
    this.init.observer?.unanswered(code, this.channel, this.correlationId)
    this.ctx.metrics.failed(this.init.service, code)
    this.ctx.metrics.answered(this.init.service, statusOf(code), this.elapsedSeconds())
    const { res } = this.init
    if (res.destroyed) return
    sendError(res, code, detail, retryAfter === undefined
      ? { correlationId: this.answerId }
      : { correlationId: this.answerId, retryAfter })
  }

  /** Frees what the call holds: its timer and its table entry. */
  end (): void {
    this.done = true
    this.init.trace?.ended()
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
    this.channel?.forget(this.correlationId)
    // The admission slot is not freed here: every ending writes an answer (or
    // finds the client gone), and the response's 'close' (handler.ts) frees it
    // once that answer is written or abandoned, so a client that does not
    // read still counts against ENQUEUER_MAX_INFLIGHT.
  }

  private get answerId (): string {
    return this.init.clientId ?? this.correlationId
  }

  private elapsedSeconds (): number {
    return (performance.now() - this.init.startedAt) / 1000
  }
}

function onTimer (call: Call): void {
  call.onTimerFired()
}
