// The enqueuer's request path: admit, route, check, read the body, publish,
// and hand the waiting to a Call. Every refusal happens before anything is
// published, and each is one sendError with its code.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { requestQueue } from '../amqp/topology'
import { DIRECT_REPLY_TO, METHODS, encodeRequest } from '../amqp/wire'
import type { ErrorCode } from '../errors'
import { declaredTooLarge, readBody, type BodyResult } from '../http/body'
import { scanRequestHeaders, type ScannedRequestHeaders } from '../http/headers'
import { sendError } from '../http/respond'
import { parseTarget, type Target } from '../http/target'
import { Call } from './call'
import { announceStream } from './stream'
import type { Ticket } from './admission'
import type { EnqueuerContext } from './context'
import type { JobRecord } from './jobs/store'
import { jobCaller, type NewJob } from './jobs/jobs'
import { QueueCheckTimeout, QueueChecksBusy, type QueueState } from './queue-check'
import type { KeyedRequest, Turn } from './idempotency/idempotency'
import { MAX_KEY_CHARS } from './idempotency/key'
import type { Waiting } from './cold-start'
import { traceRequest, type RequestTrace } from '../tracing/enqueuer'

const kCall = Symbol('relayq.call')
type TrackedSocket = Socket & { [kCall]?: Call | undefined }
const kTicket = Symbol('relayq.ticket')
type TicketedResponse = ServerResponse & { [kTicket]?: Ticket }

/** Handles `/{service}/...`; the caller has already routed reserved paths (/metrics, /jobs, ...). */
export function handleServiceRequest (ctx: EnqueuerContext, req: IncomingMessage, res: ServerResponse): void {
  const startedAt = performance.now()
  const clientId = clientRequestId(req)
  const span = ctx.tracing === null ? null : traceRequest(ctx.tracing, req, res)
  const refuse = (code: ErrorCode, detail: string, service = '_invalid', retryAfter?: number, close?: boolean): void => {
    ctx.metrics.failed(service, code)
    span?.failed(code)
    const opts = {
      ...(retryAfter === undefined ? {} : { retryAfter }),
      ...(close === true ? { close } : {}),
      ...(clientId === undefined ? {} : { correlationId: clientId }),
    }
    sendError(res, code, detail, opts)
    ctx.metrics.answered(service, res.statusCode, (performance.now() - startedAt) / 1000)
  }
  const { config } = ctx
  if (ctx.admission.draining) return refuse('RQ_ERR_DRAINING', 'this enqueuer is shutting down', '_invalid', 1, true)
  if (ctx.sender.full) return refuse('RQ_ERR_SEND_BUFFER_FULL', 'answers to clients that do not read them hold too much memory', '_invalid', 1)
  const url = req.url ?? '/'
  if (url.length > config.maxUrlBytes) return refuse('RQ_ERR_URI_TOO_LONG', `request target longer than ${config.maxUrlBytes} bytes`)
  if (req.rawHeaders.length > config.maxHeaders * 2) return refuse('RQ_ERR_HEADERS_TOO_LARGE', `more than ${config.maxHeaders} headers`, '_invalid', undefined, true)
  const target = parseTarget(url)
  if (typeof target === 'string') return refuse(target, target === 'RQ_ERR_INVALID_SERVICE' ? 'invalid service name' : 'invalid request path')
  const method = req.method ?? 'GET'
  if (!METHODS.has(method)) return refuse('RQ_ERR_METHOD_NOT_ALLOWED', `method ${method} is not supported`)
  const headers = scanRequestHeaders(req.rawHeaders, config.async.authHeader, ctx.tokens !== null)
  if (ctx.tokens !== null && !ctx.tokens.accepts(headers.authorization)) return refuse('RQ_ERR_UNAUTHORIZED', 'a valid bearer token is required')
  // The one check on the hot path while ENQUEUER_IDEMPOTENCY is off.
  const keyed = ctx.idempotency === null ? null : ctx.idempotency.read(req.headers['idempotency-key'], target.service, headers.authorization ?? headers.jobToken ?? '', headers.prefer)
  if (keyed === 'invalid') return refuse('RQ_ERR_IDEMPOTENCY_KEY_INVALID', `Idempotency-Key must be a structured-field string ("...") of 1 to ${MAX_KEY_CHARS} printable ASCII characters, sent once`)
  const methodProblem = ctx.jobs?.methodRefusal(method, headers.prefer) ?? null
  if (methodProblem !== null) {
    allowPostOnly(res)
    return refuse('RQ_ERR_METHOD_NOT_ALLOWED', methodProblem)
  }
  if (config.services !== null && !config.services.has(target.service)) {
    return refuse('RQ_ERR_SERVICE_NOT_ALLOWED', `service ${target.service} is not served here`, '_unknown')
  }
  const timeoutMs = requestTimeout(headers.timeoutMs, config.replyTimeoutMs)
  if (timeoutMs === null) return refuse('RQ_ERR_INVALID_TIMEOUT', `x-relayq-timeout-ms must be an integer from 1 to ${config.replyTimeoutMs}`)
  if (declaredTooLarge(headers.contentLength, config.maxBodyBytes)) {
    return refuse('RQ_ERR_BODY_TOO_LARGE', `body larger than ${config.maxBodyBytes} bytes`, '_invalid', undefined, true)
  }
  const brokerProblem = brokerRefusal(ctx)
  if (brokerProblem !== null) return refuse(brokerProblem, 'the broker cannot take requests now', '_unknown', 1)

  const ticket = ctx.admission.admit(target.service)
  if (typeof ticket === 'string') {
    switch (ticket) {
      case 'RQ_ERR_DRAINING': return refuse(ticket, 'this enqueuer is shutting down', '_invalid', 1, true)
      case 'RQ_ERR_OVERLOADED': return refuse(ticket, 'too many requests in flight', '_invalid', 1)
      // Labelled like the queue check labels the name: only allow-listed names become metric labels.
      case 'RQ_ERR_SERVICE_OVERLOADED':
        return refuse(ticket, `too many requests in flight for service ${target.service}`, config.services === null ? '_unknown' : target.service, 1)
    }
  }
  // The catch-all: whatever path ends this request, its answer's close gives the slot back.
  releaseOnClose(res, ticket)
  ctx.forwarded.apply(headers.table, req.socket.remoteAddress)
  const queue = requestQueue(target.service)
  const state = ctx.checker.state(queue)
  const request: Pending = { ctx, req, res, target, method, headers, timeoutMs, startedAt, queue, ticket, clientId, refuse, keyed, span }
  if (state instanceof Promise) {
    state.then((s) => afterCheck(request, s), (err: unknown) => {
      ticket.release()
      if (err instanceof QueueChecksBusy) refuse('RQ_ERR_OVERLOADED', 'too many services are being looked up at once; retry shortly', '_unknown', 1)
      else if (err instanceof QueueCheckTimeout) refuse('RQ_ERR_BROKER_UNAVAILABLE', 'the broker did not answer in time (ENQUEUER_PUBLISH_TIMEOUT_MS)', '_unknown', 1)
      else refuse('RQ_ERR_BROKER_UNAVAILABLE', 'cannot check the service queue now', '_unknown', 1)
    })
  } else {
    afterCheck(request, state)
  }
}

interface Pending {
  readonly ctx: EnqueuerContext
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly target: Target
  readonly method: string
  readonly headers: ScannedRequestHeaders
  readonly timeoutMs: number
  readonly startedAt: number
  readonly queue: string
  readonly ticket: Ticket
  /** The client's own x-correlation-id (or x-request-id): returned and logged, never put on the message. */
  readonly clientId: string | undefined
  readonly refuse: (code: ErrorCode, detail: string, service?: string, retryAfter?: number, close?: boolean) => void
  /** Set when the request carries an Idempotency-Key (ENQUEUER_IDEMPOTENCY=true). */
  readonly keyed: KeyedRequest | null
  /** Set when it was published while its service had no consumer. */
  coldStart?: Waiting
  /** The request's SERVER span, when tracing is on. */
  readonly span: RequestTrace | null
}

function afterCheck (p: Pending, state: QueueState): void {
  const { ctx, target, ticket, refuse } = p
  const service = target.service
  if (!state.exists) {
    ticket.release()
    return refuse('RQ_ERR_QUEUE_NOT_FOUND', `no queue for service ${service}`, ctx.config.services === null ? '_unknown' : service)
  }
  ctx.metrics.received(service, p.method)
  if (state.unavailable === true) {
    ticket.release()
    return refuse('RQ_ERR_QUEUE_UNAVAILABLE', `the queue of service ${service} is on a broker node that is down (a classic queue lives on one node; quorum queues survive this)`, service, 1)
  }
  // Not a breaker failure: answered at once, and often a sub-second gap (see service-breaker.ts).
  // With ENQUEUER_NO_CONSUMERS=wait it is published anyway, to wait for a pod (cold-start.ts).
  if (state.consumers === 0) {
    const waiting = ctx.coldStart?.admit(service, p.queue, ticket, p.startedAt) ?? null
    if (waiting === null || waiting === 'full') {
      ticket.release()
      if (waiting === 'full') return refuse('RQ_ERR_TOO_MANY_WAITING', `${ctx.config.coldStart.maxWaiting} requests already wait for service ${service} to start`, service, 1)
      return refuse('RQ_ERR_NO_CONSUMERS', `service ${service} has no consumer`, service, 1)
    }
    p.coldStart = waiting
  }
  const admission = ctx.breakers.admit(service)
  if (typeof admission === 'number') {
    ticket.release()
    return refuse('RQ_ERR_CIRCUIT_OPEN', `service ${service} keeps failing; retry later`, service, admission)
  }
  // A probe that ends without a verdict (client gone, broker lost) lets the next request probe.
  if (admission === 'probe') ticket.hold(() => ctx.breakers.release(service))
  const job: NewJob | null = ctx.jobs?.wanted(p.headers.prefer) === true
    ? { service, token: p.headers.jobToken, callbackUrl: p.headers.callbackUrl, caller: jobCaller(p.req, ctx.tokens === null ? undefined : p.headers.authorization) }
    : null
  const jobRefusal = job === null ? null : ctx.jobs!.refusal(job)
  if (jobRefusal !== null) {
    ticket.release()
    return refuse(jobRefusal.code, jobRefusal.detail, service, jobRefusal.retryAfter)
  }
  const expectBody = p.headers.contentLength !== undefined || p.headers.transferEncoding !== undefined
  readBody(p.req, ctx.config.maxBodyBytes, expectBody, (body) => {
    const next = (): void => { if (job === null) afterBody(p, body, null); else afterJobBody(p, body, job) }
    // A keyed request is claimed (or answered from the store) before anything else happens to it.
    if (p.keyed === null || typeof body === 'string') next()
    else ctx.idempotency!.begin(p.keyed, keyedTurn(p, body), p.timeoutMs, next)
  })
}

function keyedTurn (p: Pending, body: Buffer): Turn {
  const { ctx, ticket, target } = p
  return {
    res: p.res,
    method: p.method,
    target: p.req.url ?? '/',
    body,
    isHead: p.method === 'HEAD',
    deadline: Date.now() + p.timeoutMs - (performance.now() - p.startedAt),
    clientId: p.clientId,
    refuse: (code, detail, retryAfter) => {
      ticket.release()
      p.refuse(code, detail, target.service, retryAfter)
    },
    // The slot is freed by the response's 'close', once the replay is written or abandoned.
    sender: ctx.sender,
    replayed: (status) => {
      ctx.metrics.answered(target.service, status, (performance.now() - p.startedAt) / 1000)
    },
  }
}

/** A job: recorded as pending first, so the 202 (sent once the broker confirms) names a job that exists. */
function afterJobBody (p: Pending, body: BodyResult, job: NewJob): void {
  if (typeof body === 'string') {
    afterBody(p, body, null)
    return
  }
  const { ctx, ticket, refuse } = p
  ctx.jobs!.create(job).then((record) => {
    // The client left while the job was being recorded: nobody will learn its id, so it is neither published nor kept.
    if (ticket.isReleased || p.res.destroyed) {
      ctx.jobs!.abandon(record)
      return
    }
    afterBody(p, body, record)
  }, (err: Error) => {
    ctx.logger.warn({ err: err.message }, 'job store unavailable')
    ticket.release()
    refuse('RQ_ERR_JOB_STORE_UNAVAILABLE', 'the job store cannot be reached', job.service, 1)
  })
}

function afterBody (p: Pending, body: BodyResult, job: JobRecord | null): void {
  const { ctx, target, ticket, refuse } = p
  const service = target.service
  const jobs = ctx.jobs
  // Until its 202 goes out, a job ends with its request: nobody was told its id.
  const keepJob = job === null || jobs === null ? null : ticket.hold(() => jobs.abandon(job))
  if (body === 'too_large' || body === 'aborted') {
    ticket.release()
    if (body === 'aborted') return
    return refuse('RQ_ERR_BODY_TOO_LARGE', `body larger than ${ctx.config.maxBodyBytes} bytes`, service, undefined, true)
  }
  const channel = ctx.pool.pick()
  const brokerProblem = channel === null ? (ctx.connection.up ? 'RQ_ERR_OVERLOADED' : 'RQ_ERR_BROKER_UNAVAILABLE') : brokerRefusal(ctx)
  if (brokerProblem !== null || channel === null) {
    ticket.release()
    return refuse(brokerProblem ?? 'RQ_ERR_BROKER_UNAVAILABLE', 'the broker cannot take requests now', service, 1)
  }
  // Always relayq's own: a client's chosen id on the message could capture another request's reply.
  const correlationId = job?.job_id ?? randomUUID()
  // A job waits in the queue as long as it may live; the client is not waiting on it.
  const deadline = Date.now() + (job === null ? p.timeoutMs : ctx.config.async.jobTtlSeconds * 1000)
  const trace = p.span === null ? null : p.span.send({ service, queue: p.queue, correlationId, messageId: p.keyed?.key ?? correlationId, bodySize: body.length, jobId: job?.job_id }, p.headers.table)
  const call = new Call(ctx, {
    correlationId,
    clientId: p.clientId,
    service,
    queue: p.queue,
    res: p.res,
    isHead: p.method === 'HEAD',
    startedAt: p.startedAt,
    deadline,
    timeoutMs: p.timeoutMs,
    ticket,
    onConfirmed: job === null || jobs === null || keepJob === null
      ? undefined
      : (c: Call) => {
          keepJob()
          p.keyed?.acceptedJob(job)
          c.accepted(() => jobs.accepted(p.res, job))
        },
    observer: p.keyed === null ? undefined : p.keyed.published(p.clientId),
    coldStart: p.coldStart,
    trace: trace ?? undefined,
  })
  trackOnSocket(p.req.socket, call)
  // The client sees its own id; this line ties it to the message's (the id the dequeuer logs).
  if (p.clientId !== undefined) ctx.logger.debug({ service, correlationId, clientId: p.clientId, ...p.span?.logIds() }, 'request published under the client\'s id')
  const message = encodeRequest({
    method: p.method,
    path: target.path,
    headers: p.headers.table,
    body,
    correlationId,
    replyTo: job === null || jobs === null ? DIRECT_REPLY_TO : jobs.resultsQueue,
    // A keyed request may finish after its client's 504: its answer is still stored (idempotency/lingerer.ts).
    deadline: job === null && p.keyed !== null ? deadline + p.keyed.graceMs : deadline,
    ...(p.keyed === null ? {} : { messageId: p.keyed.key, idempotencyScope: p.keyed.scoped }),
    // A 202 promises the request survives a broker restart.
    persistent: job !== null || ctx.config.persistent,
    contentType: p.headers.contentType,
    ...(job === null ? {} : { jobId: job.job_id }),
  })
  // Only a plain call takes a streamed answer: a job's or a keyed request's answer is stored whole.
  if (job === null && p.keyed === null && ctx.streamAccept !== null) announceStream(message, ctx.streamAccept)
  call.start(channel, message)
}

/** RFC 9110: a 405 lists the methods allowed. */
function allowPostOnly (res: ServerResponse): void {
  res.setHeader('allow', 'POST')
}

/** Node runs one request per connection at a time; one close listener per socket covers them all. */
function trackOnSocket (socket: TrackedSocket, call: Call): void {
  if (!(kCall in socket)) {
    socket.once('close', () => {
      const current = socket[kCall]
      if (current !== undefined && !current.finished) current.abandon()
    })
  }
  socket[kCall] = call
}

/** A response emits 'close' once; one listener shared by all of them finds the ticket on the response (no closure per request). */
function releaseOnClose (res: TicketedResponse, ticket: Ticket): void {
  res[kTicket] = ticket
  res.on('close', releaseTicket)
}

function releaseTicket (this: TicketedResponse): void {
  this[kTicket]?.release()
}

/**
 * The id a client chose for its request, when it is one relayq may echo: visible
 * ASCII, no spaces or commas (two copies of the header read as one "a, b"), short.
 */
export function clientRequestId (req: IncomingMessage): string | undefined {
  const id = req.headers['x-correlation-id'] ?? req.headers['x-request-id']
  return typeof id === 'string' && /^[\x21-\x2b\x2d-\x7e]{1,128}$/.test(id) ? id : undefined
}

function brokerRefusal (ctx: EnqueuerContext): ErrorCode | null {
  if (!ctx.connection.up || !ctx.pool.ready) return 'RQ_ERR_BROKER_UNAVAILABLE'
  if (ctx.connection.blocked) return 'RQ_ERR_BROKER_BLOCKED'
  return null
}

/** The reply wait: the configured maximum, or less when the caller asks with x-relayq-timeout-ms. */
export function requestTimeout (header: string | undefined, maxMs: number): number | null {
  if (header === undefined) return maxMs
  if (!/^\d{1,10}$/.test(header)) return null
  const ms = Number(header)
  return ms >= 1 && ms <= maxMs ? ms : null
}
