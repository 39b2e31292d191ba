// The in-memory job store shared by the workers of one enqueuer: it lives in
// the cluster primary, and each worker reaches it over IPC (primary-rpc.ts).
// A job created through one worker is readable through any.
import type { Worker } from 'node:cluster'
import { PrimaryCaller, servePrimary } from '../primary-rpc'
import type { JobRecord, JobStore } from './store'

type Op = 'create' | 'complete' | 'get' | 'delete'
const OPS: readonly Op[] = ['create', 'complete', 'get', 'delete']
const CHANNEL = 'jobs'

/** Worker side. */
export class ClusterJobStore implements JobStore {
  private readonly primary = new PrimaryCaller<Op>(CHANNEL)

  create (job: JobRecord, ttlSeconds: number): Promise<void> {
    return this.primary.call('create', [job, ttlSeconds]) as Promise<void>
  }

  complete (jobId: string, done: Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>, ttlSeconds: number): Promise<JobRecord | null> {
    return this.primary.call('complete', [jobId, done, ttlSeconds]) as Promise<JobRecord | null>
  }

  get (jobId: string): Promise<JobRecord | null> {
    return this.primary.call('get', [jobId]) as Promise<JobRecord | null>
  }

  delete (jobId: string): Promise<void> {
    return this.primary.call('delete', [jobId]) as Promise<void>
  }

  async close (): Promise<void> {
    this.primary.close()
  }
}

/** Primary side: answers one worker's store calls from the primary's own store. */
export function serveJobStore (worker: Worker, store: JobStore): void {
  servePrimary(worker, CHANNEL, OPS, store)
}
