// Async jobs. A request becomes a job (ASYNC_MODE=true, or `Prefer:
// respond-async`): it is recorded as pending, published as a persistent
// message whose reply goes to the durable results queue, and answered 202
// only once the broker has confirmed it, so a 202 is a promise the request
// will not be lost. Any enqueuer replica or worker consumes the results queue
// and writes each outcome to the job store, acking only after the write.
import { createHash, randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { redactUrl } from '../../amqp/connection'
import { decodeResponse } from '../../amqp/wire'
import type { AsyncConfig } from '../../config/types'
import type { ErrorCode } from '../../errors'
import { sendError, sendJson } from '../../http/respond'
import type { ResponseSender } from '../../http/send'
import type { EnqueuerMetrics } from '../../metrics/enqueuer'
import { secretsEqual } from '../auth'
import { sendCallback } from './callback'
import { CallbackTargets } from './callback-target'
import { RedisJobStore } from './redis-store'
import { ResultsConsumer } from './results-consumer'
import { encodeBody, notKept, outcomeBytes, toApi, type JobOutcome, type JobRecord, type JobStore } from './store'

export interface NewJob {
  readonly service: string
  /** Value of ASYNC_AUTH_HEADER on the creating request. */
  readonly token: string | undefined
  readonly callbackUrl: string | undefined
  /** Who asks (see jobCaller): eviction takes from whoever holds the most. */
  readonly caller: string
}

/** A caller's identity for fairness: its bearer token when the enqueuer checks tokens, else its address (hashed either way). */
export function jobCaller (req: IncomingMessage, verifiedAuthorization: string | undefined): string {
  const who = verifiedAuthorization === undefined ? `addr:${req.socket.remoteAddress ?? ''}` : `token:${verifiedAuthorization}`
  return sha256(who).slice(0, 24)
}

export class Jobs {
  /**
   * Where job replies go. With Redis, one durable queue that every replica
   * consumes (any of them can record any result). With the in-memory store,
   * only this enqueuer knows its jobs, so it gets a queue of its own, removed
   * by the broker once unused for the job TTL.
   */
  readonly resultsQueue: string
  private readonly resultsQueueArgs: Record<string, string | number>
  private readonly results: ResultsConsumer
  /** Where callbacks may go; the enqueuer adds its own ports once listening. */
  readonly callbacks: CallbackTargets
  /** Set while the job store is known to be unreachable (Redis): why. */
  private storeDown: string | null = null

  constructor (
    readonly config: AsyncConfig,
    readonly store: JobStore,
    private readonly logger: Logger,
    private readonly metrics: EnqueuerMetrics,
    instanceId: string,
    /** Writes a job's answer like a reply: under the send timeout, its bytes counted (a result can be large). */
    private readonly sender: ResponseSender,
  ) {
    const shared = config.redisUrl !== null
    this.resultsQueue = shared ? config.resultsQueue : `${config.resultsQueue}.${instanceId}`
    // A quorum queue survives the loss of a node; a classic one waits for its node to come back.
    const typeArgs = config.resultsQueueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {}
    this.resultsQueueArgs = shared ? typeArgs : { ...typeArgs, 'x-expires': config.jobTtlSeconds * 1000 }
    this.results = new ResultsConsumer(this.resultsQueue, this.resultsQueueArgs, logger, (ch, msg) => { void this.onResult(ch, msg) })
    this.callbacks = new CallbackTargets(config.callbackAllowedHosts)
    if (store instanceof RedisJobStore) this.watchRedis(store, config.redisUrl ?? '')
  }

  /**
   * Why this enqueuer should not be ready, or null. Only with ASYNC_MODE=true,
   * where a POST can only become a job: otherwise request/reply works without
   * the job store, and a Redis outage (logged) is a degraded state in which
   * jobs alone get 503.
   */
  notReadyReason (): string | null {
    if (!this.config.always) return null
    return this.storeDown ?? (this.results.consuming ? null : 'the results queue is not consumed')
  }

  /** Says when the job store cannot be reached (at start-up too) and when it can again, naming REDIS_URL. */
  private watchRedis (store: RedisJobStore, url: string): void {
    const where = `REDIS_URL=${redactUrl(url)}`
    store.on('down', (err: Error & { code?: string }) => {
      if (this.storeDown !== null) return
      this.storeDown = `the job store cannot be reached at ${where}`
      this.logger.error({ err: err.code ?? err.message }, `the job store cannot be reached at ${where}: jobs get 503 until it can`)
    })
    store.on('up', () => {
      if (this.storeDown === null) return
      this.storeDown = null
      this.logger.info(`the job store at ${where} is reachable again`)
    })
  }

  /** Whether this request should become a job. */
  wanted (prefer: string | undefined): boolean {
    return this.config.always || prefersAsync(prefer)
  }

  /**
   * ASYNC_MODE=true keeps ProxyMQ's async enqueuer's semantics: a POST becomes
   * a job and any other method is refused (405), since that enqueuer serves
   * POST only; `Prefer: respond-async` still makes a job of any method.
   */
  methodRefusal (method: string, prefer: string | undefined): string | null {
    if (!this.config.always || method === 'POST' || prefersAsync(prefer)) return null
    return `ASYNC_MODE=true: only POST makes a job (or send Prefer: respond-async); ${method} is not allowed`
  }

  /** The refusal a job request gets before its body is read, or null. */
  refusal (job: NewJob): { code: ErrorCode, detail: string, retryAfter?: number } | null {
    if (this.config.requireAuth && job.token === undefined) return { code: 'RQ_ERR_UNAUTHORIZED', detail: `jobs need the ${this.config.authHeader} header` }
    const callbackProblem = job.callbackUrl === undefined ? null : this.callbacks.refusal(job.callbackUrl)
    if (callbackProblem !== null) return { code: 'RQ_ERR_CALLBACK_NOT_ALLOWED', detail: `x-relayq-callback-url ${callbackProblem}` }
    // A result published to a queue nobody consumes (its node down, say) would leave the job pending until it expires.
    if (!this.results.consuming) return { code: 'RQ_ERR_RESULTS_UNAVAILABLE', detail: `the results queue ${this.resultsQueue} is not consumed at the moment; retry later`, retryAfter: 1 }
    return null
  }

  /** Records a new pending job; its id is the request's correlation id. */
  async create (job: NewJob): Promise<JobRecord> {
    const record: JobRecord = {
      job_id: randomUUID(),
      service: job.service,
      status: 'pending',
      created_at: Date.now() / 1000,
      ...(job.token === undefined ? {} : { token_sha256: sha256(job.token) }),
      ...(job.callbackUrl === undefined ? {} : { callback_url: job.callbackUrl }),
      caller: job.caller,
    }
    await this.store.create(record, this.config.jobTtlSeconds)
    return record
  }

  accepted (res: ServerResponse, job: JobRecord): void {
    this.metrics.jobCreated(job.service)
    sendJson(res, 202, acceptedBody(job), ['location', `/jobs/${job.job_id}`, 'x-correlation-id', job.job_id])
  }

  /** The message could not be published: the job never existed. */
  abandon (job: JobRecord): void {
    this.store.delete(job.job_id).catch(() => {})
  }

  /** GET /jobs/{id} */
  handleGet (req: IncomingMessage, res: ServerResponse, jobId: string): void {
    if (!/^[0-9a-f-]{36}$/.test(jobId)) {
      sendError(res, 'RQ_ERR_JOB_NOT_FOUND', 'no such job')
      return
    }
    const presented = req.headers[this.config.authHeader]
    const token = Array.isArray(presented) ? presented[0] : presented
    // Before the lookup, so that without a token an existing job and a missing one look the same.
    if (token === undefined && this.config.requireAuth) return sendError(res, 'RQ_ERR_UNAUTHORIZED', `reading a job needs the ${this.config.authHeader} header`)
    // A client that does not read its answers holds their bytes here: past the budget, reads wait like requests do.
    if (this.sender.full) return sendError(res, 'RQ_ERR_SEND_BUFFER_FULL', 'answers to clients that do not read them hold too much memory', { retryAfter: 1 })
    this.store.get(jobId).then((job) => {
      if (job === null) return sendError(res, 'RQ_ERR_JOB_NOT_FOUND', 'no such job, or it has expired')
      if (job.token_sha256 !== undefined && (token === undefined || !secretsEqual(sha256(token), job.token_sha256))) {
        return sendError(res, 'RQ_ERR_FORBIDDEN', 'this job belongs to another token')
      }
      this.metrics.jobRetrieved(job.service)
      const body = Buffer.from(JSON.stringify(toApi(job)))
      this.sender.send(res, 200, ['content-type', 'application/json', 'content-length', String(body.length)], req.method === 'HEAD' ? null : body)
    }, (err: Error) => {
      this.logger.warn({ err: err.message }, 'job store unavailable')
      sendError(res, 'RQ_ERR_JOB_STORE_UNAVAILABLE', 'the job store cannot be reached', { retryAfter: 1 })
    })
  }

  /** Declares the results queue and consumes it; part of the connection's setup, which it never fails. */
  async attach (conn: ChannelModel): Promise<void> {
    await this.results.attach(conn)
  }

  detach (): void {
    this.results.detach()
  }

  async close (): Promise<void> {
    await this.results.close()
    await this.store.close()
  }

  private async onResult (ch: Channel, msg: ConsumeMessage): Promise<void> {
    const reply = decodeResponse(msg)
    const jobId = reply.jobId ?? reply.correlationId
    if (jobId === undefined) {
      ch.ack(msg)
      this.metrics.lateReply()
      return
    }
    const failed = reply.errorCode !== undefined
    let done: JobOutcome = failed
      ? { status: 'failed', completed_at: Date.now() / 1000, error: errorText(reply.body, reply.errorCode) }
      : { status: 'completed', completed_at: Date.now() / 1000, result: { status_code: reply.status, headers: headerObject(reply.headers), ...encodeBody(reply.body) } }
    const size = outcomeBytes(done)
    if (size > this.config.maxResultBytes) {
      done = notKept(done, 'RQ_ERR_RESPONSE_TOO_LARGE', `the result (${size} bytes) is larger than ASYNC_MAX_RESULT_BYTES (${this.config.maxResultBytes})`)
    }
    let job: JobRecord | null
    try {
      job = await this.store.complete(jobId, done, this.config.jobTtlSeconds)
    } catch (err) {
      // Not written: give the result back, so this or another enqueuer writes it later.
      this.logger.warn({ err: (err as Error).message, jobId }, 'cannot record a job result; it stays queued')
      setTimeout(() => { try { ch.nack(msg, false, true) } catch { /* channel gone: redelivered anyway */ } }, 1000)
      return
    }
    try { ch.ack(msg) } catch { /* channel gone: the result comes again and is written again */ }
    if (job === null) {
      // Counted as a reply for no known request (a hostile or stray result is dropped here, not looped).
      this.metrics.lateReply()
      this.logger.debug({ jobId, malformed: reply.malformed }, 'result for an unknown or expired job')
      return
    }
    this.metrics.jobCompleted(job.service, job.status)
    if (job.callback_url !== undefined) sendCallback(job.callback_url, toApi(job), this.logger, this.callbacks)
  }
}

/** The body of a job's 202 (an idempotency key stores it, so a retry names the same job). */
export function acceptedBody (job: JobRecord): Record<string, string> {
  return { job_id: job.job_id, status: 'pending', message: 'Job queued successfully' }
}

function prefersAsync (prefer: string | undefined): boolean {
  return prefer !== undefined && /(^|[\s,;])respond-async(\s*[,;]|\s*$)/i.test(prefer)
}

function sha256 (s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

function headerObject (flat: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i] as string
    const value = flat[i + 1] as string
    const prev = out[name]
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return out
}

function errorText (body: Buffer, code: string): string {
  try {
    const parsed = JSON.parse(body.toString()) as { detail?: string }
    return `${code}: ${parsed.detail ?? ''}`.trim()
  } catch {
    return code
  }
}
