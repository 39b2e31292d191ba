// Jobs in this process's memory: bounded (the oldest go first past
// ASYNC_MAX_JOBS) and expiring. It cannot survive a restart or be read from
// another replica; with ENQUEUER_WORKERS > 1 it lives in the cluster primary
// and the workers reach it over IPC (cluster-store.ts).
import type { JobRecord, JobStore } from './store'

interface Entry { job: JobRecord, expiresAt: number }

export class MemoryJobStore implements JobStore {
  private readonly jobs = new Map<string, Entry>()

  constructor (private readonly maxJobs: number, private readonly now: () => number = Date.now) {}

  async create (job: JobRecord, ttlSeconds: number): Promise<void> {
    this.sweep()
    while (this.jobs.size >= this.maxJobs) {
      const oldest = this.jobs.keys().next().value
      if (oldest === undefined) break
      this.jobs.delete(oldest)
    }
    this.jobs.set(job.job_id, { job, expiresAt: this.now() + ttlSeconds * 1000 })
  }

  async complete (jobId: string, done: Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>, ttlSeconds: number): Promise<JobRecord | null> {
    const entry = this.live(jobId)
    if (entry === null) return null
    const job: JobRecord = { ...entry.job, ...done }
    this.jobs.set(jobId, { job, expiresAt: this.now() + ttlSeconds * 1000 })
    return job
  }

  async get (jobId: string): Promise<JobRecord | null> {
    return this.live(jobId)?.job ?? null
  }

  async delete (jobId: string): Promise<void> {
    this.jobs.delete(jobId)
  }

  async close (): Promise<void> {
    this.jobs.clear()
  }

  get size (): number {
    return this.jobs.size
  }

  private live (jobId: string): Entry | null {
    const entry = this.jobs.get(jobId)
    if (entry === undefined) return null
    if (entry.expiresAt <= this.now()) {
      this.jobs.delete(jobId)
      return null
    }
    return entry
  }

  /** Insertion order is creation order, so expired jobs are at the front. */
  private sweep (): void {
    const now = this.now()
    for (const [id, entry] of this.jobs) {
      if (entry.expiresAt > now) break
      this.jobs.delete(id)
    }
  }
}
