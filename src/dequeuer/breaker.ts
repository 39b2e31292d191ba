// The dequeuer's circuit breaker (opossum) around calls to the service, and
// its policy: open stops consuming (held messages go back uncounted);
// half-open probes once, with a health check when there is a health URL,
// otherwise with one real message while deliveries are held to one at a time;
// closed consumes at full prefetch again. A leaf: it drives the gate and the
// one-at-a-time hold, and never calls back into the message path.
import CircuitBreaker from 'opossum'
import type { BreakerConfig } from '../config/types'
import type { ForwardResult } from './call-result'
import type { Gate } from './gate'

export interface BreakerHooks {
  readonly gate: Gate
  /** Holds deliveries to one unacked at a time (true) while a real message probes. */
  readonly probeOneAtATime: (on: boolean) => Promise<void>
  /** A health check to probe with instead of a real message, if there is one. */
  readonly healthCheck: (() => Promise<{ ok: boolean, why: string }>) | null
  /** Told of each state change (metrics, log). */
  readonly onState: (state: BreakerState) => void
}

export type BreakerState = 'closed' | 'half_open' | 'open'

/** Rejection value that makes opossum count a call as failed while we still keep its result. */
class CountedFailure extends Error {
  constructor (readonly result: ForwardResult) {
    super('counted failure')
  }
}

export const OPEN = Symbol('breaker open')

/** What a call through the breaker gives: the service's answer, or OPEN when the breaker refused it without calling. */
export type CallResult = ForwardResult | typeof OPEN

export class Breaker {
  private readonly cb: CircuitBreaker<[() => Promise<ForwardResult>], ForwardResult> | null

  constructor (private readonly cfg: BreakerConfig, private readonly hooks: BreakerHooks) {
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
    this.cb.on('open', () => this.onState('open'))
    this.cb.on('halfOpen', () => this.onState('half_open'))
    this.cb.on('close', () => this.onState('closed'))
  }

  get state (): BreakerState {
    if (this.cb === null || this.cb.closed) return 'closed'
    return this.cb.halfOpen ? 'half_open' : 'open'
  }

  /** Runs the call through the breaker; OPEN when the breaker refused it without calling. */
  async run (fn: () => Promise<ForwardResult>): Promise<CallResult> {
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

  private onState (state: BreakerState): void {
    const { gate, healthCheck } = this.hooks
    this.hooks.onState(state)
    switch (state) {
      case 'open':
        void this.hooks.probeOneAtATime(false)
        gate.pause('breaker')
        return
      case 'closed':
        void this.hooks.probeOneAtATime(false)
        gate.resume('breaker')
        return
      case 'half_open':
        if (healthCheck !== null) {
          void this.run(async () => {
            const { ok, why } = await healthCheck()
            return ok ? { kind: 'response', status: 200, rawHeaders: [], body: Buffer.alloc(0) } : { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: why }
          })
          return
        }
        // One real message, with nothing else held meanwhile.
        void this.hooks.probeOneAtATime(true).then(() => gate.resume('breaker'))
    }
  }

  private countsAsFailure (r: ForwardResult): boolean {
    if (r.kind === 'error') return r.code !== 'RQ_ERR_RESPONSE_TOO_LARGE'
    return this.cfg.failureStatuses.has(r.status)
  }
}
