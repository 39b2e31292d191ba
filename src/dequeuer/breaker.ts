// The dequeuer's circuit breaker (opossum) around calls to the service. It
// only keeps the statistics and the state; what an open breaker means (stop
// consuming, give held messages back uncounted) is the consumer's business,
// told through onState.
import CircuitBreaker from 'opossum'
import type { BreakerConfig } from '../config/types'
import type { ForwardResult } from './forward'

export type BreakerState = 'closed' | 'half_open' | 'open'

/** Rejection value that makes opossum count a call as failed while we still keep its result. */
class CountedFailure extends Error {
  constructor (readonly result: ForwardResult) {
    super('counted failure')
  }
}

export const OPEN = Symbol('breaker open')

export class Breaker {
  private readonly cb: CircuitBreaker<[() => Promise<ForwardResult>], ForwardResult> | null

  constructor (private readonly cfg: BreakerConfig, onState: (state: BreakerState) => void) {
    if (!cfg.enabled) {
      this.cb = null
      return
    }
    this.cb = new CircuitBreaker((fn: () => Promise<ForwardResult>) => fn().then((r) => {
      if (this.countsAsFailure(r)) throw new CountedFailure(r)
      return r
    }), {
      timeout: false,
      errorThresholdPercentage: cfg.errorPercent,
      volumeThreshold: cfg.volume,
      rollingCountTimeout: cfg.windowMs,
      rollingCountBuckets: 10,
      resetTimeout: cfg.resetMs,
    })
    this.cb.on('open', () => onState('open'))
    this.cb.on('halfOpen', () => onState('half_open'))
    this.cb.on('close', () => onState('closed'))
  }

  get state (): BreakerState {
    if (this.cb === null || this.cb.closed) return 'closed'
    return this.cb.halfOpen ? 'half_open' : 'open'
  }

  /** Runs the call through the breaker; OPEN when the breaker refused it without calling. */
  async run (fn: () => Promise<ForwardResult>): Promise<ForwardResult | typeof OPEN> {
    if (this.cb === null) return fn()
    try {
      return await this.cb.fire(fn)
    } catch (err) {
      if (err instanceof CountedFailure) return err.result
      if ((err as NodeJS.ErrnoException).code === 'EOPENBREAKER') return OPEN
      throw err
    }
  }

  shutdown (): void {
    this.cb?.shutdown()
  }

  private countsAsFailure (r: ForwardResult): boolean {
    if (r.kind === 'error') return r.code !== 'RQ_ERR_RESPONSE_TOO_LARGE'
    return this.cfg.failureStatuses.has(r.status)
  }
}
