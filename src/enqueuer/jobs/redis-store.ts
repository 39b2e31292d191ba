// Jobs in Redis: one JSON value per job under relayq:job:{id}, with the job
// TTL as its expiry. Every replica and worker reads the same jobs, and they
// survive an enqueuer restart. Commands fail fast while Redis is away (no
// offline queue), so a request gets a 503 at once instead of hanging.
//
// Results count against a byte budget (ASYNC_MAX_STORED_BYTES) kept in Redis
// itself, so every replica sees one sum: each result's size sits in a hash and
// its expiry in a sorted set, and one script sweeps expired sizes, checks the
// budget and writes, atomically. A result that does not fit is stored as a
// failed job saying so; nothing already stored is evicted.
import { EventEmitter } from 'node:events'
import Redis from 'ioredis'
import { notKept, outcomeBytes, type JobOutcome, type JobRecord, type JobStore } from './store'

const KEY = (id: string): string => `relayq:job:${id}`
const SIZES = 'relayq:results:sizes'
const EXPIRY = 'relayq:results:expiry'
const TOTAL = 'relayq:results:bytes'

// KEYS: job, sizes, expiry, total. ARGV: id, record, fallback record, ttl s, now ms, size, budget.
// Returns 1 when the record was stored, 0 when the fallback was (the budget was full).
const COMPLETE = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[5], 'LIMIT', 0, 200)
for _, id in ipairs(expired) do
  local s = redis.call('HGET', KEYS[2], id)
  if s then redis.call('DECRBY', KEYS[4], s) end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then
  redis.call('DECRBY', KEYS[4], prev)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
if total < 0 then redis.call('SET', KEYS[4], 0); total = 0 end
local size = tonumber(ARGV[6])
if total + size > tonumber(ARGV[7]) then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
if size > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], size)
  redis.call('ZADD', KEYS[3], tonumber(ARGV[5]) + tonumber(ARGV[4]) * 1000, ARGV[1])
  redis.call('INCRBY', KEYS[4], size)
end
return 1
`

export interface RedisStoreOptions {
  /** ASYNC_MAX_STORED_BYTES */
  readonly maxBytes?: number
  /** Prepended to every key (tests use one of their own). */
  readonly keyPrefix?: string
  readonly now?: () => number
}

export class RedisJobStore extends EventEmitter<{ up: [], down: [Error] }> implements JobStore {
  private readonly redis: Redis
  private closing = false
  private readonly maxBytes: number
  private readonly now: () => number

  constructor (url: string, opts: RedisStoreOptions = {}) {
    super()
    this.maxBytes = opts.maxBytes ?? Number.MAX_SAFE_INTEGER
    this.now = opts.now ?? Date.now
    this.redis = new Redis(url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
      connectTimeout: 2000,
      ...(opts.keyPrefix === undefined ? {} : { keyPrefix: opts.keyPrefix }),
    })
    // Errors also surface on each command; ioredis keeps reconnecting meanwhile.
    // 'down' tells the owner (who logs and reports readiness), once per error or close.
    this.redis.on('error', (err: Error) => { if (!this.closing) this.emit('down', err) })
    this.redis.on('close', () => { if (!this.closing) this.emit('down', new Error('connection closed')) })
    this.redis.on('ready', () => this.emit('up'))
  }

  get up (): boolean {
    return this.redis.status === 'ready'
  }

  /** Resolves once connected (start-up waits for it, briefly). */
  async ready (timeoutMs = 3000): Promise<boolean> {
    if (this.redis.status === 'ready') return true
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.redis.off('ready', onReady); resolve(false) }, timeoutMs)
      const onReady = (): void => { clearTimeout(timer); resolve(true) }
      this.redis.once('ready', onReady)
    })
  }

  async create (job: JobRecord, ttlSeconds: number): Promise<void> {
    await this.redis.set(KEY(job.job_id), JSON.stringify(job), 'EX', ttlSeconds, 'NX')
  }

  /**
   * Writes the outcome even when the job's record is gone (Redis restarted
   * without persistence, or lost the key): the service ran the job, and its
   * 202 promised the result. Such a record has lost its service name, creation
   * time and token guard: its random id is then all that guards it.
   */
  async complete (jobId: string, done: JobOutcome, ttlSeconds: number): Promise<JobRecord | null> {
    const base = await this.get(jobId) ?? { job_id: jobId, service: 'unknown', status: 'pending', created_at: done.completed_at ?? this.now() / 1000 }
    const size = outcomeBytes(done)
    const job: JobRecord = { ...base, ...done }
    const full: JobRecord = { ...base, ...notKept(done, 'RQ_ERR_JOB_STORE_FULL', `the result (${size} bytes) did not fit ASYNC_MAX_STORED_BYTES (${this.maxBytes}) in the job store`) }
    const stored = await this.redis.eval(COMPLETE, 4, KEY(jobId), SIZES, EXPIRY, TOTAL,
      jobId, JSON.stringify(job), JSON.stringify(full), ttlSeconds, this.now(), size, this.maxBytes)
    return stored === 1 ? job : full
  }

  async get (jobId: string): Promise<JobRecord | null> {
    const raw = await this.redis.get(KEY(jobId))
    return raw === null ? null : JSON.parse(raw) as JobRecord
  }

  async delete (jobId: string): Promise<void> {
    await this.redis.del(KEY(jobId))
  }

  /** Bytes of the results held, by the store's own account. */
  async bytes (): Promise<number> {
    return Number(await this.redis.get(TOTAL) ?? 0)
  }

  async close (): Promise<void> {
    this.closing = true
    this.redis.disconnect()
  }
}
