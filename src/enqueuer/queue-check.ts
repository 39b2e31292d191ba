// Whether a service's queue exists and has consumers, without a broker round
// trip per request. An answer is used for at most ENQUEUER_QUEUE_CHECK_TTL_MS:
// past half of it one background refresh runs, so steady traffic never waits;
// an older answer is never used (the request waits for a fresh one), so the
// first request after the last consumer left hears 503 at once instead of
// waiting out the reply timeout. (A queue deleted in between is still caught:
// requests are published `mandatory` and come back as returns.)
//
// Names come from clients, so a flood of random ones must cost the broker
// little and the real services nothing: queues that exist (known) and missing
// ones (the negative cache) are kept apart, each evicting its least recently
// used, so random names never push a real service out; and checks of names
// not known are limited in number in flight and per second, while checks of
// known names never wait behind them.
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import { classify } from '../amqp/errors'

export interface QueueState {
  readonly exists: boolean
  readonly consumers: number
  /** Ready messages when checked (a passive declare does not count unacknowledged ones). */
  readonly messages?: number
  /** It exists but cannot be reached: a classic queue whose node is down. */
  readonly unavailable?: true
}

interface Entry {
  state: QueueState
  checkedAt: number
  /** When the queue was last seen to exist (-Infinity: never). */
  existedAt: number
  /** When it was last moved to the recent end of its map. */
  touchedAt: number
}

/** First-time checks in flight at once; beyond it they are refused rather than piled on the broker. */
const MAX_CONCURRENT_CHECKS = 32
const MAX_ENTRIES = 10000
const NEGATIVE_TTL_MS = 500
// RabbitMQ answers a passive declare with the same 404 for a queue that was
// deleted and for a durable classic queue whose only cluster node is down; it
// says which only in its reply text, which relayq does not read. A queue seen
// to exist this recently is taken to be unavailable (503, retry) rather than
// gone: its node may be down, or its dequeuer is declaring it again. Like a
// queue without consumers it is rechecked every half second, so it is served
// again soon after its node is back.
const VANISHED_GRACE_MS = 60_000
const TOUCH_INTERVAL_MS = 1000

export interface QueueCheckerOptions {
  /** Checks of names not known to exist, per second (a token bucket of one second's worth); 0: no limit. */
  readonly newChecksPerSecond?: number
  /** Entries kept of each kind (known, missing). */
  readonly maxEntries?: number
  readonly now?: () => number
  /** How long a broker check may take before the request waiting on it is refused (0: no bound). */
  readonly checkTimeoutMs?: number
}

/** The broker did not answer a check in time (a stalled connection that heartbeats have not yet declared dead). */
export class QueueCheckTimeout extends Error {
  constructor (ms: number) { super(`the broker did not answer the queue check within ${ms} ms`) }
}

/** Refused because too many first-time checks are already in flight: a flood of new names, not a broker fault. */
export class QueueChecksBusy extends Error {
  constructor () { super('too many queue checks in flight') }
}

export class QueueChecker {
  /** Queues that existed when last checked; never evicted by names that do not exist. */
  private readonly known = new Map<string, Entry>()
  /** The negative cache: names checked and found missing. */
  private readonly missing = new Map<string, Entry>()
  private readonly checking = new Map<string, Promise<QueueState>>()
  private newChecks = 0
  private tokens: number
  private refilledAt: number
  private conn: ChannelModel | null = null
  private readonly rate: number
  private readonly maxEntries: number
  private readonly now: () => number
  private readonly checkTimeoutMs: number
  /** Broker checks made (tests and figures). */
  checksMade = 0

  constructor (private readonly ttlMs: number, private readonly logger: Logger, opts: QueueCheckerOptions = {}) {
    this.rate = opts.newChecksPerSecond ?? 0
    this.maxEntries = opts.maxEntries ?? MAX_ENTRIES
    this.now = opts.now ?? Date.now
    this.checkTimeoutMs = opts.checkTimeoutMs ?? 0
    this.tokens = this.rate
    this.refilledAt = this.now()
  }

  /** A new connection: whatever was cached may have changed while disconnected, but which names are real has not. */
  attach (conn: ChannelModel): void {
    this.conn = conn
    for (const e of this.known.values()) e.checkedAt = -Infinity
    this.missing.clear()
  }

  detach (): void {
    this.conn = null
  }

  /**
   * The cached state while it is younger than the TTL (refreshed ahead in the
   * background past half of it), else a promise of a fresh check. Rejects when
   * the broker cannot be asked.
   */
  state (queue: string): QueueState | Promise<QueueState> {
    const entry = this.known.get(queue) ?? this.missing.get(queue)
    if (entry === undefined || this.ttlMs === 0) return this.refresh(queue)
    // A bad answer (no queue, no consumer) is rechecked sooner, so recovery shows within half a second.
    const ttl = entry.state.exists && entry.state.consumers > 0 ? this.ttlMs : Math.min(this.ttlMs, NEGATIVE_TTL_MS)
    const age = this.now() - entry.checkedAt
    if (age > ttl) return this.refresh(queue)
    if (age > ttl / 2 && !this.checking.has(queue)) this.refresh(queue).catch(() => {})
    // Moving an entry in the map costs a delete and an insert: once a second is recent enough for eviction.
    if (entry.state.exists && this.now() - entry.touchedAt > TOUCH_INTERVAL_MS) {
      entry.touchedAt = this.now()
      touch(this.known, queue, entry)
    }
    return entry.state
  }

  /**
   * A reply came from the queue's consumer while the cache says it has none
   * (a service just scaled from zero): believed until the next check, so the
   * requests right after it are not taken for cold starts.
   */
  sawConsumer (queue: string): void {
    const entry = this.known.get(queue)
    if (entry !== undefined && entry.state.consumers === 0 && entry.state.unavailable !== true) this.store(queue, { exists: true, consumers: 1 })
  }

  /** The queue turned out to be gone (a mandatory publish came back). */
  markMissing (queue: string): void {
    this.store(queue, { exists: false, consumers: 0 })
  }

  private refresh (queue: string): Promise<QueueState> {
    const running = this.checking.get(queue)
    if (running !== undefined) return running
    const isNew = !this.known.has(queue)
    if (isNew && (this.newChecks >= MAX_CONCURRENT_CHECKS || !this.takeToken())) return Promise.reject(new QueueChecksBusy())
    if (isNew) this.newChecks++
    this.checksMade++
    const p = this.bounded(this.ask(queue)).then((asked) => {
      const before = this.known.get(queue)
      const vanished = !asked.exists && before !== undefined && this.now() - before.existedAt <= VANISHED_GRACE_MS
      const state: QueueState = vanished ? { exists: true, consumers: 0, unavailable: true } : asked
      this.store(queue, state, before?.existedAt)
      return state
    }).finally(() => {
      this.checking.delete(queue)
      if (isNew) this.newChecks--
    })
    this.checking.set(queue, p)
    return p
  }

  // A request never waits on a check longer than a publish may take: on a
  // stalled connection the check would otherwise hang until heartbeats fail.
  private bounded (check: Promise<QueueState>): Promise<QueueState> {
    const ms = this.checkTimeoutMs
    if (ms === 0) return check
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new QueueCheckTimeout(ms)), ms)
    })
    return Promise.race([check, timeout]).finally(() => clearTimeout(timer))
  }

  private takeToken (): boolean {
    if (this.rate === 0) return true
    const now = this.now()
    this.tokens = Math.min(this.rate, this.tokens + (now - this.refilledAt) * this.rate / 1000)
    this.refilledAt = now
    if (this.tokens < 1) return false
    this.tokens--
    return true
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
      return typeof ok.messageCount === 'number' ? { exists: true, consumers: ok.consumerCount, messages: ok.messageCount } : { exists: true, consumers: ok.consumerCount }
    } catch (err) {
      const { kind } = classify(err)
      if (kind === 'not_found') return { exists: false, consumers: 0 }
      this.logger.debug({ queue, err: (err as Error).message }, 'queue check failed')
      throw err
    } finally {
      if (!closed) ch.close().catch(() => {})
    }
  }

  private store (queue: string, state: QueueState, existedBefore = -Infinity): void {
    const [into, other] = state.exists ? [this.known, this.missing] : [this.missing, this.known]
    other.delete(queue)
    into.delete(queue)
    if (into.size >= this.maxEntries) {
      const oldest = into.keys().next().value
      if (oldest !== undefined) into.delete(oldest)
    }
    const now = this.now()
    into.set(queue, { state, checkedAt: now, touchedAt: now, existedAt: state.exists && state.unavailable !== true ? now : existedBefore })
  }
}

/** Least recently used first: a Map iterates in insertion order, so a use re-inserts. */
function touch (map: Map<string, Entry>, key: string, entry: Entry): void {
  map.delete(key)
  map.set(key, entry)
}
