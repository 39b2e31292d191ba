// Jobs in Redis: one JSON value per job under relayq:job:{id}, with the job
// TTL as its expiry. Every replica and worker reads the same jobs, and they
// survive an enqueuer restart. Commands fail fast while Redis is away (no
// offline queue), so a request gets a 503 at once instead of hanging.
import Redis from 'ioredis'
import type { JobRecord, JobStore } from './store'

const KEY = (id: string): string => `relayq:job:${id}`

export class RedisJobStore implements JobStore {
  private readonly redis: Redis

  constructor (url: string) {
    this.redis = new Redis(url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
      connectTimeout: 2000,
    })
    // Errors surface on each command; ioredis keeps reconnecting meanwhile.
    this.redis.on('error', () => {})
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

  async complete (jobId: string, done: Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>, ttlSeconds: number): Promise<JobRecord | null> {
    const current = await this.get(jobId)
    if (current === null) return null
    const job: JobRecord = { ...current, ...done }
    await this.redis.set(KEY(jobId), JSON.stringify(job), 'EX', ttlSeconds)
    return job
  }

  async get (jobId: string): Promise<JobRecord | null> {
    const raw = await this.redis.get(KEY(jobId))
    return raw === null ? null : JSON.parse(raw) as JobRecord
  }

  async delete (jobId: string): Promise<void> {
    await this.redis.del(KEY(jobId))
  }

  async close (): Promise<void> {
    this.redis.disconnect()
  }
}
