// The in-memory job store shared by the workers of one enqueuer: it lives in
// the cluster primary, and each worker reaches it over the IPC channel node:cluster
// already gives it. A job created through one worker is readable through any.
import type { Worker } from 'node:cluster'
import type { JobRecord, JobStore } from './store'

type Op = 'create' | 'complete' | 'get' | 'delete'
interface Request { readonly relayq: 'jobs', readonly id: number, readonly op: Op, readonly args: unknown[] }
interface Response { readonly relayq: 'jobs-result', readonly id: number, readonly value?: unknown, readonly error?: string }

const TIMEOUT_MS = 5000

/** Worker side. */
export class ClusterJobStore implements JobStore {
  private next = 0
  private readonly waiting = new Map<number, (r: Response) => void>()
  private readonly onMessage = (msg: Response): void => {
    if (msg?.relayq !== 'jobs-result') return
    const done = this.waiting.get(msg.id)
    this.waiting.delete(msg.id)
    done?.(msg)
  }

  constructor () {
    process.on('message', this.onMessage)
  }

  create (job: JobRecord, ttlSeconds: number): Promise<void> {
    return this.call('create', [job, ttlSeconds]) as Promise<void>
  }

  complete (jobId: string, done: Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>, ttlSeconds: number): Promise<JobRecord | null> {
    return this.call('complete', [jobId, done, ttlSeconds]) as Promise<JobRecord | null>
  }

  get (jobId: string): Promise<JobRecord | null> {
    return this.call('get', [jobId]) as Promise<JobRecord | null>
  }

  delete (jobId: string): Promise<void> {
    return this.call('delete', [jobId]) as Promise<void>
  }

  async close (): Promise<void> {
    process.off('message', this.onMessage)
  }

  private call (op: Op, args: unknown[]): Promise<unknown> {
    const id = ++this.next
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new Error('the cluster primary did not answer'))
      }, TIMEOUT_MS)
      this.waiting.set(id, (r) => {
        clearTimeout(timer)
        if (r.error !== undefined) reject(new Error(r.error))
        else resolve(r.value ?? null)
      })
      process.send?.({ relayq: 'jobs', id, op, args } satisfies Request)
    })
  }
}

/** Primary side: answers one worker's store calls from the primary's own store. */
export function serveJobStore (worker: Worker, store: JobStore): void {
  worker.on('message', (msg: Request) => {
    if (msg?.relayq !== 'jobs') return
    const fn = store[msg.op] as (...a: unknown[]) => Promise<unknown>
    fn.apply(store, msg.args).then(
      (value) => { if (worker.isConnected()) worker.send({ relayq: 'jobs-result', id: msg.id, value: value ?? null } satisfies Response) },
      (err: Error) => { if (worker.isConnected()) worker.send({ relayq: 'jobs-result', id: msg.id, error: err.message } satisfies Response) },
    )
  })
}
