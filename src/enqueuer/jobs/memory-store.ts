// Jobs in this process's memory: expiring, and bounded twice, by count
// (ASYNC_MAX_JOBS) and by the bytes of their results (ASYNC_MAX_STORED_BYTES).
// Past either bound the oldest job of the caller holding the most goes, so a
// caller flooding the store evicts its own jobs, not everyone else's. It
// cannot survive a restart or be read from another replica; with
// ENQUEUER_WORKERS > 1 it lives in the cluster primary and the workers reach
// it over IPC (cluster-store.ts).
import { Heaviest } from './heaviest'
import { notKept, outcomeBytes, type JobOutcome, type JobRecord, type JobStore } from './store'

/** What a record costs beyond its result: its fields and the maps that index it (measured order of magnitude). */
const RECORD_BYTES = 512

interface Entry { job: JobRecord, expiresAt: number, bytes: number, readonly caller: string }

export class MemoryJobStore implements JobStore {
  private readonly jobs = new Map<string, Entry>()
  /** Each caller's job ids, oldest first, and what they hold. */
  private readonly callers = new Map<string, { ids: Set<string>, usage: number }>()
  private readonly heaviest = new Heaviest()
  private resultBytes = 0

  constructor (
    private readonly maxJobs: number,
    private readonly maxBytes: number = Number.MAX_SAFE_INTEGER,
    private readonly now: () => number = Date.now,
  ) {}

  async create (job: JobRecord, ttlSeconds: number): Promise<void> {
    this.sweep()
    while (this.jobs.size >= this.maxJobs && this.evictOne()) { /* until there is room */ }
    this.add({ job, expiresAt: this.now() + ttlSeconds * 1000, bytes: 0, caller: job.caller ?? '' })
  }

  async complete (jobId: string, done: JobOutcome, ttlSeconds: number): Promise<JobRecord | null> {
    this.sweep()
    const entry = this.live(jobId)
    if (entry === null) return null
    // Taken out while room is made, so making room never evicts the job being completed.
    this.remove(jobId)
    let outcome = done
    let bytes = outcomeBytes(done)
    if (bytes > this.maxBytes) {
      outcome = notKept(done, 'RQ_ERR_JOB_STORE_FULL', `the result (${bytes} bytes) is larger than ASYNC_MAX_STORED_BYTES (${this.maxBytes})`)
      bytes = outcomeBytes(outcome)
    }
    while (this.resultBytes + bytes > this.maxBytes && this.evictOne()) { /* until it fits */ }
    const job: JobRecord = { ...entry.job, ...outcome }
    this.add({ job, expiresAt: this.now() + ttlSeconds * 1000, bytes, caller: entry.caller })
    return job
  }

  async get (jobId: string): Promise<JobRecord | null> {
    return this.live(jobId)?.job ?? null
  }

  async delete (jobId: string): Promise<void> {
    this.remove(jobId)
  }

  async close (): Promise<void> {
    this.jobs.clear()
    this.callers.clear()
    this.resultBytes = 0
  }

  get size (): number {
    return this.jobs.size
  }

  /** Bytes of the results held (the part ASYNC_MAX_STORED_BYTES bounds). */
  get bytes (): number {
    return this.resultBytes
  }

  private add (entry: Entry): void {
    this.jobs.set(entry.job.job_id, entry)
    this.resultBytes += entry.bytes
    let c = this.callers.get(entry.caller)
    if (c === undefined) this.callers.set(entry.caller, c = { ids: new Set(), usage: 0 })
    c.ids.add(entry.job.job_id)
    c.usage += RECORD_BYTES + entry.bytes
    this.heaviest.set(entry.caller, c.usage)
  }

  private remove (jobId: string): void {
    const entry = this.jobs.get(jobId)
    if (entry === undefined) return
    this.jobs.delete(jobId)
    this.resultBytes -= entry.bytes
    const c = this.callers.get(entry.caller)
    if (c === undefined) return
    c.ids.delete(jobId)
    c.usage -= RECORD_BYTES + entry.bytes
    if (c.ids.size === 0) this.callers.delete(entry.caller)
    this.heaviest.set(entry.caller, c.ids.size === 0 ? 0 : c.usage)
  }

  /** Drops the oldest job of the caller holding the most; false when the store is empty. */
  private evictOne (): boolean {
    const caller = this.heaviest.top()
    if (caller === undefined) return false
    const oldest = this.callers.get(caller)?.ids.values().next().value
    if (oldest === undefined) return false
    this.remove(oldest)
    return true
  }

  private live (jobId: string): Entry | null {
    const entry = this.jobs.get(jobId)
    if (entry === undefined) return null
    if (entry.expiresAt <= this.now()) {
      this.remove(jobId)
      return null
    }
    return entry
  }

  /** Insertion order is creation (or completion) order, so expired jobs are at the front. */
  private sweep (): void {
    const now = this.now()
    for (const [id, entry] of this.jobs) {
      if (entry.expiresAt > now) break
      this.remove(id)
    }
  }
}
