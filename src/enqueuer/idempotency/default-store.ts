// Which idempotency store an enqueuer process uses, as for async jobs: Redis
// when configured, else memory (in a cluster worker, the primary's, over IPC).
import cluster from 'node:cluster'
import type { IdempotencyConfig } from '../../config/types'
import { ClusterIdempotencyStore } from './cluster-store'
import { MemoryIdempotencyStore } from './memory-store'
import { RedisIdempotencyStore } from './redis-store'
import type { IdempotencyStore } from './store'

export function defaultIdempotencyStore (cfg: IdempotencyConfig): IdempotencyStore {
  if (cfg.redisUrl !== null) return new RedisIdempotencyStore(cfg.redisUrl)
  return cluster.isWorker ? new ClusterIdempotencyStore() : new MemoryIdempotencyStore()
}
