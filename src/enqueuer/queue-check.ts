// Whether a service's queue exists and has consumers, without a broker round
// trip per request. Answers are cached for ENQUEUER_QUEUE_CHECK_TTL_MS and
// served stale while one background refresh runs, so only the first request
// for a service waits on the broker. (A queue deleted in between is still
// caught: requests are published `mandatory` and come back as returns.)
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import { classify } from '../amqp/errors'

export interface QueueState {
  readonly exists: boolean
  readonly consumers: number
}

interface Entry {
  state: QueueState
  checkedAt: number
}

/** Checks in flight at once; beyond it, first-time checks are refused rather than piled on the broker. */
const MAX_CONCURRENT_CHECKS = 32
const MAX_ENTRIES = 10000
const NEGATIVE_TTL_MS = 500

/** Refused because too many first-time checks are already in flight: a flood of new names, not a broker fault. */
export class QueueChecksBusy extends Error {
  constructor () { super('too many queue checks in flight') }
}

export class QueueChecker {
  private readonly cache = new Map<string, Entry>()
  private readonly checking = new Map<string, Promise<QueueState>>()
  private conn: ChannelModel | null = null

  constructor (private readonly ttlMs: number, private readonly logger: Logger) {}

  /** A new connection: whatever was cached about the queues may have changed while disconnected. */
  attach (conn: ChannelModel): void {
    this.conn = conn
    this.cache.clear()
  }

  detach (): void {
    this.conn = null
  }

  /**
   * The cached state (refreshed in the background when stale), or a promise
   * of the first check. Rejects when the broker cannot be asked.
   */
  state (queue: string): QueueState | Promise<QueueState> {
    const entry = this.cache.get(queue)
    if (entry === undefined || this.ttlMs === 0) return this.refresh(queue)
    // A bad answer (no queue, no consumer) is rechecked sooner, so recovery shows within half a second.
    const ttl = entry.state.exists && entry.state.consumers > 0 ? this.ttlMs : Math.min(this.ttlMs, NEGATIVE_TTL_MS)
    if (Date.now() - entry.checkedAt > ttl && !this.checking.has(queue)) {
      this.refresh(queue).catch(() => {})
    }
    return entry.state
  }

  /** The queue turned out to be gone (a mandatory publish came back). */
  markMissing (queue: string): void {
    this.store(queue, { exists: false, consumers: 0 })
  }

  private refresh (queue: string): Promise<QueueState> {
    const running = this.checking.get(queue)
    if (running !== undefined) return running
    if (this.checking.size >= MAX_CONCURRENT_CHECKS) return Promise.reject(new QueueChecksBusy())
    const p = this.ask(queue).then((state) => {
      this.store(queue, state)
      return state
    }).finally(() => this.checking.delete(queue))
    this.checking.set(queue, p)
    return p
  }

  private async ask (queue: string): Promise<QueueState> {
    const conn = this.conn
    if (conn === null) throw new Error('not connected to the broker')
    // A passive declare of a missing queue closes its channel, so each check
    // gets a channel of its own; checks are rare (once per service per TTL).
    const ch = await conn.createChannel()
    ch.on('error', () => {})
    let closed = false
    ch.on('close', () => { closed = true })
    try {
      const ok = await ch.checkQueue(queue)
      return { exists: true, consumers: ok.consumerCount }
    } catch (err) {
      if (classify(err).kind === 'not_found') return { exists: false, consumers: 0 }
      this.logger.debug({ queue, err: (err as Error).message }, 'queue check failed')
      throw err
    } finally {
      if (!closed) ch.close().catch(() => {})
    }
  }

  private store (queue: string, state: QueueState): void {
    const prev = this.cache.get(queue)
    if (prev !== undefined) {
      prev.state = state
      prev.checkedAt = Date.now()
      return
    }
    if (this.cache.size >= MAX_ENTRIES) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(queue, { state, checkedAt: Date.now() })
  }
}
