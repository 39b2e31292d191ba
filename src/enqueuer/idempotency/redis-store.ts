// Idempotency keys in Redis, shared by every enqueuer replica and worker: one
// JSON value per key under relayq:idem:{scoped key}, expiring with it. A
// claim is one script (SET NX, else GET), so of two replicas claiming the
// same key at once exactly one wins. Commands fail fast while Redis is away
// (no offline queue): a keyed request then gets 503, never runs unclaimed.
import Redis from 'ioredis'
import type { Entry, IdempotencyStore } from './store'

const KEY = (key: string): string => `relayq:idem:${key}`

// KEYS: key. ARGV: pending entry, ttl s. Returns nil when claimed, else the entry held.
const CLAIM = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return nil end
return redis.call('GET', KEYS[1])
`
// KEYS: key. ARGV: claim id. Deletes the entry only while it is that claim's pending one.
const RELEASE = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e = cjson.decode(v)
if e.state == 'pending' and e.claim == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

export interface RedisIdempotencyOptions {
  /** Prepended to every key (tests use one of their own). */
  readonly keyPrefix?: string
}

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly redis: Redis

  constructor (url: string, opts: RedisIdempotencyOptions = {}) {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
      connectTimeout: 2000,
      ...(opts.keyPrefix === undefined ? {} : { keyPrefix: opts.keyPrefix }),
    })
    // Each command reports its own failure (a 503 for its request); ioredis keeps reconnecting.
    this.redis.on('error', () => {})
  }

  async claim (key: string, entry: Entry & { state: 'pending' }, ttlSeconds: number): Promise<Entry | null> {
    const held = await this.redis.eval(CLAIM, 1, KEY(key), JSON.stringify(entry), ttlSeconds) as string | null
    return held === null ? null : JSON.parse(held) as Entry
  }

  async complete (key: string, entry: Entry & { state: 'done' }, ttlSeconds: number): Promise<void> {
    await this.redis.set(KEY(key), JSON.stringify(entry), 'EX', ttlSeconds)
  }

  async release (key: string, claim: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, KEY(key), claim)
  }

  async close (): Promise<void> {
    this.redis.disconnect()
  }
}
