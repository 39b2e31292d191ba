// The service's answers to idempotent requests, recorded in Redis before the
// reply is published and the delivery acked (DEQUEUER_IDEMPOTENCY_REDIS_URL).
// A delivery of a request already answered (a redelivery after a crash
// between the answer and the ack, a DLQ replay of a request that succeeded
// meanwhile) is answered from the record, without calling the service again.
// The record is keyed by the enqueuer's scoped key (x-relayq-idempotency: a
// hash of service, caller and Idempotency-Key). Redis away: the service is
// called as without a key (at-least-once), and the failure is logged once.
import type { ConsumeMessage } from 'amqplib'
import Redis from 'ioredis'
import type { Logger } from 'pino'
import { H } from '../amqp/wire'
import type { ForwardResult } from './call-result'

type Response = ForwardResult & { kind: 'response' }
interface Recorded { readonly status: number, readonly rawHeaders: string[], readonly body: string }

const KEY = (scope: string): string => `relayq:idem-answer:${scope}`
// The enqueuer's scope: base64url SHA-256. Anything else is not looked up.
const SCOPE = /^[A-Za-z0-9_-]{43}$/

export class RecordedAnswers {
  private readonly redis: Redis
  private failing = false

  constructor (url: string, private readonly ttlSeconds: number, private readonly logger: Logger, opts: { keyPrefix?: string } = {}) {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
      connectTimeout: 2000,
      ...(opts.keyPrefix === undefined ? {} : { keyPrefix: opts.keyPrefix }),
    })
    this.redis.on('error', () => {})
  }

  /** The recorded answer to this message's request, or null (none, no key, or Redis away). */
  async lookup (msg: ConsumeMessage): Promise<Response | null> {
    const scope = scopeOf(msg)
    if (scope === null) return null
    try {
      const raw = await this.redis.get(KEY(scope))
      this.reachable()
      if (raw === null) return null
      const r = JSON.parse(raw) as Recorded
      return { kind: 'response', status: r.status, rawHeaders: r.rawHeaders.map((h) => Buffer.from(h, 'latin1')), body: Buffer.from(r.body, 'base64') }
    } catch (err) {
      this.failed(err as Error)
      return null
    }
  }

  /** Records a service answer (errors relayq made are not answers: a retry calls the service). */
  async record (msg: ConsumeMessage, result: ForwardResult): Promise<void> {
    const scope = scopeOf(msg)
    if (scope === null || result.kind !== 'response') return
    const value: Recorded = { status: result.status, rawHeaders: result.rawHeaders.map((h) => h.toString('latin1')), body: result.body.toString('base64') }
    try {
      await this.redis.set(KEY(scope), JSON.stringify(value), 'EX', this.ttlSeconds)
      this.reachable()
    } catch (err) {
      this.failed(err as Error)
    }
  }

  async close (): Promise<void> {
    this.redis.disconnect()
  }

  private failed (err: Error & { code?: string }): void {
    if (this.failing) return
    this.failing = true
    this.logger.error({ err: err.code ?? err.message }, 'cannot reach DEQUEUER_IDEMPOTENCY_REDIS_URL: idempotent requests are called without their record')
  }

  private reachable (): void {
    if (!this.failing) return
    this.failing = false
    this.logger.info('DEQUEUER_IDEMPOTENCY_REDIS_URL is reachable again')
  }
}

function scopeOf (msg: ConsumeMessage): string | null {
  const v = (msg.properties.headers ?? {})[H.idempotency] as unknown
  const s = Buffer.isBuffer(v) ? v.toString() : v
  return typeof s === 'string' && SCOPE.test(s) ? s : null
}
