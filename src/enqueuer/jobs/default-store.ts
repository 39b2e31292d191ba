// Which job store an enqueuer process uses: Redis when configured, else
// memory (in a cluster worker, the primary's memory, reached over IPC).
import cluster from 'node:cluster'
import type { AsyncConfig } from '../../config/types'
import { ClusterJobStore } from './cluster-store'
import { MemoryJobStore } from './memory-store'
import { RedisJobStore } from './redis-store'
import type { JobStore } from './store'

export function defaultJobStore (cfg: AsyncConfig): JobStore {
  if (cfg.redisUrl !== null) return new RedisJobStore(cfg.redisUrl, { maxBytes: cfg.maxStoredBytes })
  return cluster.isWorker ? new ClusterJobStore() : memoryJobStore(cfg)
}

export function memoryJobStore (cfg: AsyncConfig): MemoryJobStore {
  return new MemoryJobStore(cfg.maxJobs, cfg.maxStoredBytes)
}
