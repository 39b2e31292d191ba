// The in-memory idempotency store shared by the workers of one enqueuer: it
// lives in the cluster primary (as the in-memory job store does), so a retry
// that another worker takes still finds its key.
import type { Worker } from 'node:cluster'
import type { Entry, IdempotencyStore } from './store'

type Op = 'claim' | 'complete' | 'release'
interface Request { readonly relayq: 'idem', readonly id: number, readonly op: Op, readonly args: unknown[] }
interface Response { readonly relayq: 'idem-result', readonly id: number, readonly value?: unknown, readonly error?: string }

const TIMEOUT_MS = 5000
const OPS: ReadonlySet<string> = new Set<Op>(['claim', 'complete', 'release'])

/** Worker side. */
export class ClusterIdempotencyStore implements IdempotencyStore {
  private next = 0
  private readonly waiting = new Map<number, (r: Response) => void>()
  private readonly onMessage = (msg: Response): void => {
    if (msg?.relayq !== 'idem-result') return
    const done = this.waiting.get(msg.id)
    this.waiting.delete(msg.id)
    done?.(msg)
  }

  constructor () {
    process.on('message', this.onMessage)
  }

  claim (key: string, entry: Entry & { state: 'pending' }, ttlSeconds: number): Promise<Entry | null> {
    return this.call('claim', [key, entry, ttlSeconds]) as Promise<Entry | null>
  }

  async complete (key: string, entry: Entry & { state: 'done' }, ttlSeconds: number): Promise<void> {
    await this.call('complete', [key, entry, ttlSeconds])
  }

  async release (key: string, claim: string): Promise<void> {
    await this.call('release', [key, claim])
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
      process.send?.({ relayq: 'idem', id, op, args } satisfies Request)
    })
  }
}

/** Primary side: answers one worker's calls from the primary's own store. */
export function serveIdempotencyStore (worker: Worker, store: IdempotencyStore): void {
  worker.on('message', (msg: Request) => {
    if (msg?.relayq !== 'idem' || !OPS.has(msg.op)) return
    const fn = store[msg.op] as (...a: unknown[]) => Promise<unknown>
    fn.apply(store, msg.args).then(
      (value) => { if (worker.isConnected()) worker.send({ relayq: 'idem-result', id: msg.id, value: value ?? null } satisfies Response) },
      (err: Error) => { if (worker.isConnected()) worker.send({ relayq: 'idem-result', id: msg.id, error: err.message } satisfies Response) },
    )
  })
}
