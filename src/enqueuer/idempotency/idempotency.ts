// Idempotency keys at the edge (ENQUEUER_IDEMPOTENCY=true). A keyed request
// is claimed in the store before anything is published; a retry of it gets
// 409 while the first is in flight (or, with `Prefer: wait`, waits for its
// answer), the stored answer once it completed, and 422 when it is not the
// same request. The store's failure is a 503 and nothing is published.
//
// A first attempt whose client got 504 (or hung up) keeps its claim: its
// message deadline was extended by ENQUEUER_IDEMPOTENCY_GRACE_SECONDS and a
// Lingerer keeps listening on the direct reply-to channel that far, so the
// late answer is still stored for the retry (see lingerer.ts).
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { IncomingResponse } from '../../amqp/wire'
import type { IdempotencyConfig } from '../../config/types'
import type { ErrorCode } from '../../errors'
import type { EnqueuerMetrics } from '../../metrics/enqueuer'
import type { CallObserver } from '../call'
import { acceptedBody } from '../jobs/jobs'
import type { JobRecord } from '../jobs/store'
import type { RpcChannel } from '../rpc-channel'
import { fingerprint, parseKey, prefersWait, scopedKey } from './key'
import { Lingerer } from './lingerer'
import { replay } from './replay'
import type { Entry, IdempotencyStore, StoredAnswer } from './store'
import type { ResponseSender } from '../../http/send'

/** What the handler lends a keyed request to answer it (refuse releases the admission ticket). */
export interface Turn {
  readonly res: ServerResponse
  readonly method: string
  readonly target: string
  readonly body: Buffer
  readonly isHead: boolean
  /** Epoch ms after which a `Prefer: wait` stops waiting (the request's own deadline). */
  readonly deadline: number
  readonly clientId: string | undefined
  readonly refuse: (code: ErrorCode, detail: string, retryAfter?: number) => void
  /** A replay went out with this status (metrics). */
  readonly replayed: (status: number) => void
  /** Writes the replay as live answers are written: under the send timeout and the buffered-bytes bound. */
  readonly sender: ResponseSender
}

// A retry that waits polls the store (it may be another replica's key): from 50 ms, doubling, to 1 s.
const FIRST_POLL_MS = 50
const MAX_POLL_MS = 1000
// A claim outlives its request's wait and grace by this much before a retry may run it again.
const CLAIM_SLACK_SECONDS = 5

export class Idempotency {
  private lingering = 0
  /** The store's last call failed: logged once per outage, not once per request. */
  private storeFailing = false

  constructor (
    readonly config: IdempotencyConfig,
    readonly store: IdempotencyStore,
    private readonly logger: Logger,
    private readonly metrics: EnqueuerMetrics,
    /** Late-reply listeners at once, at most (each holds a table entry on a channel). */
    private readonly maxLingering: number,
  ) {}

  /** The request's key (null: none sent), or 'invalid'. `caller`: the bearer token or ASYNC_AUTH_HEADER value, '' without one. */
  read (value: string | string[] | undefined, service: string, caller: string, prefer: string | undefined): KeyedRequest | null | 'invalid' {
    if (value === undefined) return null
    const key = typeof value === 'string' ? parseKey(value) : null
    if (key === null) return 'invalid'
    return new KeyedRequest(this, service, key, scopedKey(service, caller, key), prefersWait(prefer))
  }

  /** After the body: claim the key and `run` the request, or answer from the store. */
  begin (k: KeyedRequest, turn: Turn, timeoutMs: number, run: () => void): void {
    k.fingerprint = fingerprint(turn.method, turn.target, turn.body)
    const ttl = Math.ceil((timeoutMs + this.config.graceMs) / 1000) + CLAIM_SLACK_SECONDS
    let pollMs = FIRST_POLL_MS
    const attempt = (): void => {
      this.store.claim(k.scoped, { state: 'pending', fingerprint: k.fingerprint, claim: k.claim }, ttl).then((held) => {
        this.storeReachable()
        if (turn.res.destroyed) {
          if (held === null) k.release()
          return
        }
        if (held === null) {
          k.state = 'claimed'
          // Ended before it was published (refused, client gone): nothing ran, a retry may run it.
          turn.res.once('close', () => { if (k.state === 'claimed') k.release() })
          run()
          return
        }
        if (held.fingerprint !== k.fingerprint) {
          this.counted(k, 'mismatch')
          return turn.refuse('RQ_ERR_IDEMPOTENCY_MISMATCH', 'this Idempotency-Key was used for a different request (method, path, query or body)')
        }
        if (held.state === 'done') {
          this.counted(k, 'replayed')
          turn.replayed(replay(turn.res, turn.sender, held.answer, turn.isHead, turn.clientId))
          return
        }
        const left = turn.deadline - Date.now()
        if (!k.wait || left <= pollMs) {
          this.counted(k, 'conflict')
          return turn.refuse('RQ_ERR_IDEMPOTENCY_CONFLICT', 'a request with this Idempotency-Key is still in flight', 1)
        }
        setTimeout(attempt, pollMs)
        pollMs = Math.min(MAX_POLL_MS, pollMs * 2)
      }, (err: Error) => {
        this.storeFailed(k, err, 'the idempotency store cannot be reached: keyed requests get 503 until it can')
        turn.refuse('RQ_ERR_IDEMPOTENCY_STORE_UNAVAILABLE', 'the idempotency store cannot be reached; the request was not sent', 1)
      }).catch((err: unknown) => {
        // A throw above (a bug) would be an unhandled rejection, which ends the process: this request alone fails.
        this.logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'idempotent request failed')
        if (!turn.res.headersSent) turn.refuse('RQ_ERR_INTERNAL', 'the request could not be handled')
        else turn.res.destroy()
      })
    }
    attempt()
  }

  /** The answer is stored for the key; relayq's own errors never are (a retry runs the request). */
  settle (k: KeyedRequest, reply: IncomingResponse): void {
    // Only a final answer is one to replay (a reply outside 200-599 is refused on the live path too).
    const final = Number.isInteger(reply.status) && reply.status >= 200 && reply.status <= 599
    if (reply.errorCode !== undefined || reply.malformed !== undefined || !final) {
      k.release()
      return
    }
    const tooLarge = reply.body.length > this.config.maxBodyBytes
    const answer: StoredAnswer = {
      status: reply.status,
      headers: [...reply.headers],
      body: tooLarge ? '' : reply.body.toString('base64'),
      correlationId: k.answerId ?? reply.correlationId ?? '',
      ...(tooLarge ? { tooLarge: reply.body.length } : {}),
    }
    this.complete(k, answer)
  }

  complete (k: KeyedRequest, answer: StoredAnswer): void {
    k.state = 'settled'
    const entry: Entry = { state: 'done', fingerprint: k.fingerprint, answer }
    this.store.complete(k.scoped, entry, this.config.ttlSeconds).catch((err: Error) => {
      // The claim stays until it expires: retries get 409 meanwhile, never a second run.
      this.storeFailed(k, err, 'cannot store the answer of an idempotent request; its key stays claimed until it expires')
    })
  }

  /** Keeps listening for a reply its client no longer waits for, within the grace period. */
  linger (k: KeyedRequest, channel: RpcChannel | null, correlationId: string): void {
    if (channel === null || this.config.graceMs === 0 || this.lingering >= this.maxLingering) return
    const l = new Lingerer(correlationId, channel, this.config.graceMs, (reply) => this.settle(k, reply), () => k.release(), () => { this.lingering-- })
    if (l.listening) this.lingering++
  }

  release (k: KeyedRequest): void {
    k.state = 'settled'
    this.store.release(k.scoped, k.claim).catch((err: Error) => {
      this.logger.warn({ err: err.message }, 'cannot release an idempotency claim; it expires by itself')
    })
  }

  private storeFailed (k: KeyedRequest, err: Error & { code?: string }, what: string): void {
    this.counted(k, 'store_error')
    if (this.storeFailing) return
    this.storeFailing = true
    this.logger.error({ err: err.code ?? err.message }, what)
  }

  private storeReachable (): void {
    if (!this.storeFailing) return
    this.storeFailing = false
    this.logger.info('the idempotency store is reachable again')
  }

  counted (k: KeyedRequest, outcome: 'replayed' | 'conflict' | 'mismatch' | 'store_error'): void {
    this.metrics.idempotency(k.service, outcome)
  }
}

/** One keyed request: its claim, and what it hears from its Call. */
export class KeyedRequest implements CallObserver {
  fingerprint = ''
  readonly claim = randomUUID()
  state: 'new' | 'claimed' | 'published' | 'settled' = 'new'
  answerId: string | undefined

  constructor (
    private readonly owner: Idempotency,
    readonly service: string,
    /** The client's key: it travels to the service (its header) and as the message id. */
    readonly key: string,
    readonly scoped: string,
    readonly wait: boolean,
  ) {}

  /** How much longer than its client's wait the message may live. */
  get graceMs (): number {
    return this.owner.config.graceMs
  }

  /** The Call that carries the request is made: from now on its ending decides. */
  published (answerId: string | undefined): this {
    this.state = 'published'
    this.answerId = answerId
    return this
  }

  /** A job was accepted (202): that answer is the key's, so a retry gets the same job id. */
  acceptedJob (job: JobRecord): void {
    const body = Buffer.from(JSON.stringify(acceptedBody(job)))
    this.owner.complete(this, { status: 202, headers: ['content-type', 'application/json', 'location', `/jobs/${job.job_id}`], body: body.toString('base64'), correlationId: job.job_id })
  }

  replied (reply: IncomingResponse): void {
    this.owner.settle(this, reply)
  }

  unanswered (code: ErrorCode | null, channel: RpcChannel | null, correlationId: string): void {
    switch (code) {
      // Published, perhaps running: collect its reply if it comes.
      case null:
      case 'RQ_ERR_REPLY_TIMEOUT':
      case 'RQ_ERR_PUBLISH_TIMEOUT':
        this.owner.linger(this, channel, correlationId)
        return
      // Certainly never delivered: a retry may run it.
      case 'RQ_ERR_PUBLISH_NACKED':
      case 'RQ_ERR_QUEUE_NOT_FOUND':
      case 'RQ_ERR_HEADERS_UNENCODABLE':
      case 'RQ_ERR_INTERNAL':
        this.release()
        return
      // May have run, and its reply cannot reach us: the claim expires by itself.
      default:
    }
  }

  release (): void {
    if (this.state !== 'settled') this.owner.release(this)
  }
}
