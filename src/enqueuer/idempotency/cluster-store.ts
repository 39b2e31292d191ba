// The in-memory idempotency store shared by the workers of one enqueuer: it
// lives in the cluster primary (as the in-memory job store does), so a retry
// that another worker takes still finds its key.
import type { Worker } from 'node:cluster'
import { PrimaryCaller, servePrimary } from '../primary-rpc'
import type { Entry, IdempotencyStore } from './store'

type Op = 'claim' | 'complete' | 'release'
const OPS: readonly Op[] = ['claim', 'complete', 'release']
const CHANNEL = 'idem'

/** Worker side. */
export class ClusterIdempotencyStore implements IdempotencyStore {
  private readonly primary = new PrimaryCaller<Op>(CHANNEL)

  claim (key: string, entry: Entry & { state: 'pending' }, ttlSeconds: number): Promise<Entry | null> {
    return this.primary.call('claim', [key, entry, ttlSeconds]) as Promise<Entry | null>
  }

  async complete (key: string, entry: Entry & { state: 'done' }, ttlSeconds: number): Promise<void> {
    await this.primary.call('complete', [key, entry, ttlSeconds])
  }

  async release (key: string, claim: string): Promise<void> {
    await this.primary.call('release', [key, claim])
  }

  async close (): Promise<void> {
    this.primary.close()
  }
}

/** Primary side: answers one worker's calls from the primary's own store. */
export function serveIdempotencyStore (worker: Worker, store: IdempotencyStore): void {
  servePrimary(worker, CHANNEL, OPS, store)
}
