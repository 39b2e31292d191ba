// The wire format: HTTP requests and responses as AMQP messages, compatible
// with ProxyMQ (headers `x-http-method`, `x-status-code`; the body is the raw
// HTTP body). This module is the only place that builds or reads message
// headers; the dequeuer's retry, dead-letter and requeue copies come from
// here too.
import type { Message, Options } from 'amqplib'
import { isHopByHop, isReservedHeader, type HeaderTable } from '../http/headers'
import { isSafeRelativePath } from '../http/target'
import { errorBody, type ErrorCode } from '../errors'
import {
  MAX_COUNT, MAX_DEADLINE_SPAN_MS, contentLengthValue, expirationUntil, integerValue, nonNegativeInt, parseStatus, safeString,
} from './header-values'

export const H = {
  method: 'x-http-method',
  path: 'x-http-path',
  status: 'x-status-code',
  deadline: 'x-relayq-deadline',
  attempts: 'x-relayq-attempts',
  lostDeliveries: 'x-relayq-lost-deliveries',
  firstAttemptAt: 'x-relayq-first-attempt-at',
  lastError: 'x-relayq-last-error',
  lastErrorCode: 'x-relayq-last-error-code',
  error: 'x-relayq-error',
  deadLetterReason: 'x-relayq-dead-letter-reason',
  deadLetteredAt: 'x-relayq-dead-lettered-at',
  originalQueue: 'x-relayq-original-queue',
  job: 'x-relayq-job',
  /** An idempotent request's scoped key (see enqueuer/idempotency): the dequeuer records its answer under it. */
  idempotency: 'x-relayq-idempotency',
  /** Put by relayq's frame guard in place of a header table it would not decode. */
  undecodable: 'x-relayq-undecodable',
  deliveryCount: 'x-delivery-count',
  death: 'x-death',
} as const

export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to'

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
// What Node's http module accepts in a header value (latin1, no controls but tab).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

export const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

export interface Publishable {
  readonly content: Buffer
  readonly options: Options.Publish
}

// ---------------------------------------------------------------- requests

export interface OutgoingRequest {
  readonly method: string
  /** `/{rest}?query`; null leaves it out (ProxyMQ format). */
  readonly path: string | null
  readonly headers: HeaderTable
  readonly body: Buffer
  readonly correlationId: string
  readonly replyTo: string | null
  /** Absolute deadline, epoch milliseconds. */
  readonly deadline: number
  readonly persistent: boolean
  readonly contentType: string | undefined
  /** Set on async jobs so the result consumer can tell its messages apart. */
  readonly jobId?: string
  /** The AMQP message id; default the correlation id (an idempotent request's is its Idempotency-Key). */
  readonly messageId?: string
  readonly idempotencyScope?: string
}

export function encodeRequest (req: OutgoingRequest): Publishable {
  const now = Date.now()
  // Every header is a string: ProxyMQ's dequeuer copies message headers into
  // its HTTP request, and its client fails on integers and lists. Repeated
  // request headers are combined as HTTP allows (RFC 9110 5.3; cookies with "; ").
  const headers: Record<string, unknown> = req.headers
  for (const name in headers) {
    const value = headers[name]
    if (Array.isArray(value)) headers[name] = value.join(name === 'cookie' ? '; ' : ', ')
  }
  headers[H.method] = req.method
  if (req.path !== null) headers[H.path] = req.path
  headers[H.deadline] = String(req.deadline)
  if (req.jobId !== undefined) headers[H.job] = req.jobId
  if (req.idempotencyScope !== undefined) headers[H.idempotency] = req.idempotencyScope
  const options: Options.Publish = {
    correlationId: req.correlationId,
    messageId: req.messageId ?? req.correlationId,
    timestamp: Math.floor(now / 1000),
    // The broker drops (or dead-letters) requests whose caller has given up.
    expiration: expirationUntil(req.deadline, now) ?? '1',
    headers,
    persistent: req.persistent,
    mandatory: true,
  }
  if (req.replyTo !== null) options.replyTo = req.replyTo
  if (req.contentType !== undefined) options.contentType = req.contentType
  return { content: req.body, options }
}

export class MalformedMessageError extends Error {
  override readonly name = 'MalformedMessageError'
}

export interface IncomingRequest {
  readonly method: string
  /** null for ProxyMQ messages, which carry no path: forward to DOWNSTREAM_URL as is. */
  readonly path: string | null
  readonly headers: HeaderTable
  readonly body: Buffer
  readonly correlationId: string | undefined
  readonly replyTo: string | undefined
  /** Epoch ms, or null when the publisher set none. */
  readonly deadline: number | null
  readonly jobId: string | undefined
}

export function decodeRequest (msg: Message, now = Date.now()): IncomingRequest {
  const props = msg.properties
  const raw = (props.headers ?? {}) as Record<string, unknown>
  const undecodable = raw[H.undecodable]
  if (undecodable !== undefined) throw new MalformedMessageError(`undecodable message: ${safeString(undecodable) ?? 'unknown reason'}`)
  const methodValue = raw[H.method]
  const method = methodValue === undefined ? 'POST' : headerString(methodValue, H.method).toUpperCase()
  if (!METHODS.has(method)) throw new MalformedMessageError(`unsupported method "${method.slice(0, 20)}"`)
  const pathValue = raw[H.path]
  const path = pathValue === undefined ? null : headerString(pathValue, H.path)
  if (path !== null && !isSafeRelativePath(path)) throw new MalformedMessageError('x-http-path is not a safe relative path')
  const deadlineValue = raw[H.deadline]
  let deadline: number | null = null
  if (deadlineValue !== undefined) {
    deadline = integerValue(deadlineValue)
    if (deadline === null || Math.abs(deadline - now) > MAX_DEADLINE_SPAN_MS) throw new MalformedMessageError('x-relayq-deadline is not a time within 30 days of now')
  }
  checkControlHeaders(raw, now)
  const jobValue = raw[H.job]
  return {
    method,
    path,
    headers: forwardableHeaders(raw),
    body: msg.content,
    correlationId: optionalString(props.correlationId),
    replyTo: optionalString(props.replyTo),
    deadline,
    jobId: jobValue === undefined ? undefined : headerString(jobValue, H.job),
  }
}

/** The message headers that go to the service: everything but control, broker and hop-by-hop headers. */
function forwardableHeaders (raw: Record<string, unknown>): HeaderTable {
  const out: HeaderTable = {}
  for (const key in raw) {
    const name = key.toLowerCase()
    if (isReservedHeader(name) || isHopByHop(name)) continue
    if (!TOKEN.test(name)) throw new MalformedMessageError(`invalid header name "${name.slice(0, 40)}"`)
    const value = raw[key]
    out[name] = Array.isArray(value) ? value.map((v) => headerString(v, name)) : headerString(value, name)
  }
  return out
}

function headerString (value: unknown, name: string): string {
  let s: string
  if (typeof value === 'string') s = value
  else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') s = String(value)
  else if (Buffer.isBuffer(value)) s = value.toString('latin1')
  else throw new MalformedMessageError(`header ${name.slice(0, 40)} has an unsupported type`)
  // Header values travel as latin1 strings (as Node and undici read them); CR, LF and NUL would split the request.
  if (/[\r\n\0]/.test(s)) throw new MalformedMessageError(`header ${name.slice(0, 40)} contains a line break`)
  return s
}

function optionalString (value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * The counters relayq reads to decide (attempts, careful mode) are in range:
 * small non-negative integers, and a first-attempt time not in the future.
 * Written as strings by relayq, as integers by older versions.
 */
const COUNT_HEADERS = [H.attempts, H.lostDeliveries, H.deliveryCount] as const

function checkControlHeaders (raw: Record<string, unknown>, now: number): void {
  for (const name of COUNT_HEADERS) {
    const value = raw[name]
    if (value === undefined) continue
    const n = integerValue(value)
    if (n === null || n < 0 || n > MAX_COUNT) throw new MalformedMessageError(`${name} is not a count from 0 to ${MAX_COUNT}`)
  }
  const first = raw[H.firstAttemptAt]
  if (first !== undefined) {
    const n = integerValue(first)
    if (n === null || n <= 0 || n > now + MAX_DEADLINE_SPAN_MS) throw new MalformedMessageError(`${H.firstAttemptAt} is not a time`)
  }
}

// ---------------------------------------------------------------- responses

export interface OutgoingResponse {
  readonly status: number
  readonly headers: HeaderTable
  readonly body: Buffer
  readonly correlationId: string | undefined
  readonly contentType: string | undefined
  /** Set when relayq made this answer itself. */
  readonly errorCode?: ErrorCode
  /** Persistent replies are for durable result queues (async jobs). */
  readonly persistent?: boolean
  readonly jobId?: string | undefined
}

export function encodeResponse (res: OutgoingResponse): Publishable {
  const headers: Record<string, unknown> = res.headers
  headers[H.status] = String(res.status)
  if (res.errorCode !== undefined) headers[H.error] = res.errorCode
  if (res.jobId !== undefined) headers[H.job] = res.jobId
  const options: Options.Publish = { headers }
  if (res.correlationId !== undefined) options.correlationId = res.correlationId
  if (res.contentType !== undefined) options.contentType = res.contentType
  if (res.persistent === true) options.persistent = true
  return { content: res.body, options }
}

export interface IncomingResponse {
  readonly status: number
  /** Flat [name, value, ...] list, ready for `res.writeHead`. */
  readonly headers: string[]
  readonly body: Buffer
  readonly correlationId: string | undefined
  readonly errorCode: string | undefined
  /** Only on HEAD answers: a valid Content-Length of the body the service did not send. */
  readonly contentLength: string | undefined
  readonly jobId: string | undefined
  /** 204 and 304 carry no body and no Content-Length (RFC 9110 8.6, 15.3.5); `body` is then empty. */
  readonly noBody: boolean
  /**
   * Set when the reply itself is unusable (a header table relayq would not
   * decode, a status outside 200-599, a bad content-length): the response is
   * then relayq's own 502 RQ_ERR_MALFORMED_REPLY, ready to send as it is.
   */
  readonly malformed?: string
}

export function decodeResponse (msg: Message): IncomingResponse {
  const raw = (msg.properties.headers ?? {}) as Record<string, unknown>
  const correlationId = optionalString(msg.properties.correlationId)
  const headers: string[] = []
  let status = 200
  let errorCode: string | undefined
  let contentLength: string | undefined
  let jobId: string | undefined
  let problem: string | undefined
  for (const key in raw) {
    const name = key.toLowerCase()
    const value = raw[key]
    if (name === H.status) {
      const parsed = parseStatus(value)
      if (parsed === null) problem ??= 'x-status-code is not a final HTTP status (200-599)'
      else status = parsed
      continue
    }
    if (name === H.undecodable) {
      problem = `undecodable reply: ${safeString(value) ?? 'unknown reason'}`
      continue
    }
    if (name === H.error) errorCode = safeString(value)
    else if (name === H.job) {
      jobId = safeString(value)
      continue
    } else if (name === 'content-length') {
      const length = contentLengthValue(value)
      if (length === null) problem ??= 'content-length is not a non-negative integer'
      else contentLength = length
      continue
      // relayq answers with its own correlation id; the service's would sit beside it.
    } else if (name === 'x-correlation-id' || isHopByHop(name) || (isReservedHeader(name) && name !== H.error)) continue
    appendHeader(headers, name, value)
  }
  if (problem !== undefined) return malformedReply(problem, correlationId, jobId)
  const noBody = status === 204 || status === 304
  return { status, headers, body: noBody ? Buffer.alloc(0) : msg.content, correlationId, errorCode, contentLength: noBody ? undefined : contentLength, jobId, noBody }
}

const MALFORMED_REPLY: ErrorCode = 'RQ_ERR_MALFORMED_REPLY'

function malformedReply (detail: string, correlationId: string | undefined, jobId: string | undefined): IncomingResponse {
  return {
    status: 502,
    headers: ['content-type', 'application/json', H.error, MALFORMED_REPLY],
    body: errorBody(MALFORMED_REPLY, detail),
    correlationId,
    errorCode: MALFORMED_REPLY,
    contentLength: undefined,
    jobId,
    noBody: false,
    malformed: detail,
  }
}

function appendHeader (out: string[], name: string, value: unknown): void {
  if (Array.isArray(value)) {
    for (const v of value) appendHeader(out, name, v)
    return
  }
  const s = safeString(value)
  // A header Node would refuse to write is dropped rather than failing the whole response.
  if (s !== undefined && TOKEN.test(name) && FIELD_VALUE.test(s)) out.push(name, s)
}

// ---------------------------------------------------------------- dequeuer copies

/** Counted attempts before this delivery, from relayq's own header (and the broker's count on quorum queues). */
export function priorAttempts (msg: Message, quorum: boolean): number {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
  const own = nonNegativeInt(headers[H.attempts])
  return quorum ? own + nonNegativeInt(headers[H.deliveryCount]) : own
}

/**
 * Deliveries of this message that ended without an answer (the dequeuer
 * crashed or lost its channel while holding it). A message with any is a
 * suspect: it may be the one that crashed the dequeuer.
 */
export function lostDeliveries (msg: Message, quorum: boolean): number {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
  const own = nonNegativeInt(headers[H.lostDeliveries])
  return quorum ? own + nonNegativeInt(headers[H.deliveryCount]) : own
}

export function firstAttemptAt (msg: Message): number | null {
  const v = integerValue((msg.properties.headers as Record<string, unknown> | undefined)?.[H.firstAttemptAt])
  return v !== null && v > 0 ? v : null
}

export interface CopyInfo {
  /** Counted attempts so far, written as `x-relayq-attempts`. */
  readonly attempts: number
  /** Deliveries lost so far, written as `x-relayq-lost-deliveries`. */
  readonly lostDeliveries: number
  readonly firstAttemptAt: number
  readonly errorCode?: ErrorCode | undefined
  readonly errorMessage?: string | undefined
}

/**
 * A copy of a delivered message to publish again (retry, requeue without
 * counting, or a counted crash on a classic queue): same body, same
 * properties, relayq's attempt headers updated. The broker's own death and
 * delivery-count headers are dropped, so counting starts afresh on the copy.
 */
export function republishCopy (msg: Message, info: CopyInfo, now = Date.now()): Publishable {
  const headers = copyHeaders(msg, info)
  const options = copyProperties(msg, headers)
  const deadline = integerValue(headers[H.deadline])
  const expiration = deadline === null || Math.abs(deadline - now) > MAX_DEADLINE_SPAN_MS ? undefined : expirationUntil(deadline, now)
  if (expiration !== undefined) options.expiration = expiration
  return { content: msg.content, options }
}

export interface DeadLetterInfo extends CopyInfo {
  readonly reason: DeadLetterReason
  readonly originalQueue: string
}

export type DeadLetterReason = 'max_attempts' | 'malformed' | 'expired' | 'too_large' | 'redelivery_limit' | 'reply_unroutable'

/** A copy for the dead-letter queue: no expiration (it must wait for an operator), reason headers added. */
export function deadLetterCopy (msg: Message, info: DeadLetterInfo, now = Date.now()): Publishable {
  const headers = copyHeaders(msg, info)
  headers[H.deadLetterReason] = info.reason
  headers[H.originalQueue] = info.originalQueue
  headers[H.deadLetteredAt] = String(now)
  const options = copyProperties(msg, headers)
  options.persistent = true
  return { content: msg.content, options }
}

/**
 * The copy `dlq replay` publishes back to the request queue: attempts reset,
 * reason and death headers gone, and no deadline or expiration (the original
 * caller's deadline has passed; the replay is served whenever it is reached).
 */
export function replayCopy (msg: Message, now = Date.now()): Publishable {
  const headers: Record<string, unknown> = {}
  const raw = (msg.properties.headers ?? {}) as Record<string, unknown>
  for (const key in raw) {
    const name = key.toLowerCase()
    if (name.startsWith('x-relayq-') && name !== H.job) continue
    if (name === H.death || name === H.deliveryCount || name === 'x-acquired-count' ||
      name.startsWith('x-first-death-') || name.startsWith('x-last-death-')) continue
    headers[key] = raw[key]
  }
  const options = copyProperties(msg, headers)
  options.timestamp = Math.floor(now / 1000)
  options.persistent = true
  return { content: msg.content, options }
}

function copyHeaders (msg: Message, info: CopyInfo): Record<string, unknown> {
  const headers: Record<string, unknown> = {}
  const raw = (msg.properties.headers ?? {}) as Record<string, unknown>
  for (const key in raw) {
    const name = key.toLowerCase()
    if (name === H.death || name === H.deliveryCount || name === 'x-acquired-count' ||
      name.startsWith('x-first-death-') || name.startsWith('x-last-death-')) continue
    headers[key] = raw[key]
  }
  // Strings, as every header relayq writes (these copies go back to the request queue; see encodeRequest),
  // the deadline included when an older relayq wrote it as an integer.
  const deadline = integerValue(headers[H.deadline])
  if (deadline !== null) headers[H.deadline] = String(deadline)
  headers[H.attempts] = String(info.attempts)
  if (info.lostDeliveries > 0) headers[H.lostDeliveries] = String(info.lostDeliveries)
  else Reflect.deleteProperty(headers, H.lostDeliveries)
  headers[H.firstAttemptAt] = String(info.firstAttemptAt)
  if (info.errorCode !== undefined) headers[H.lastErrorCode] = info.errorCode
  if (info.errorMessage !== undefined) headers[H.lastError] = info.errorMessage.slice(0, 500)
  return headers
}

function copyProperties (msg: Message, headers: Record<string, unknown>): Options.Publish {
  const p = msg.properties
  const options: Options.Publish = { headers }
  if (p.correlationId !== undefined) options.correlationId = p.correlationId
  if (p.replyTo !== undefined) options.replyTo = p.replyTo
  if (p.messageId !== undefined) options.messageId = p.messageId
  if (p.timestamp !== undefined) options.timestamp = p.timestamp
  if (p.contentType !== undefined) options.contentType = p.contentType
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding
  if (p.type !== undefined) options.type = p.type
  if (p.appId !== undefined) options.appId = p.appId
  if (p.deliveryMode === 2) options.persistent = true
  return options
}
