// A breaker per service on the enqueuer. When a service's replies keep timing
// out, piling up more requests only makes more clients wait for a 504. After
// `threshold` consecutive timeouts the service fails fast (503 + Retry-After)
// for a cool-down; then one request at a time is let through as a probe, and
// any reply closes the breaker.
//
// A queue without a consumer is not a failure of the service: the enqueuer
// answers it at once (503 NO_CONSUMERS) and nothing waits, and the gap is
// often sub-second (a dequeuer starting, reconnecting, or its own breaker
// pausing it). Counting it would stretch such gaps into cool-downs.

export type BreakerState = 'closed' | 'half_open' | 'open'

interface Entry {
  state: BreakerState
  failures: number
  openedAt: number
  /** When the current probe went through; 0: no probe out. */
  probeAt: number
}

export interface ServiceBreakerOptions {
  readonly enabled: boolean
  readonly threshold: number
  readonly cooldownMs: number
}

export class ServiceBreakers {
  private readonly entries = new Map<string, Entry>()

  constructor (
    private readonly opts: ServiceBreakerOptions,
    private readonly onTransition: (service: string, state: BreakerState) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** 'pass', 'probe' (the one request let through while half-open), or seconds to wait. */
  admit (service: string): 'pass' | 'probe' | number {
    if (!this.opts.enabled) return 'pass'
    const e = this.entries.get(service)
    if (e === undefined || e.state === 'closed') return 'pass'
    const waited = this.now() - e.openedAt
    if (e.state === 'open' && waited >= this.opts.cooldownMs) this.move(service, e, 'half_open')
    // A probe is waited on for one cool-down at most: a probe that hangs (its
    // reply timeout can be minutes) must not keep the service shut after it recovered.
    if (e.state === 'half_open' && (e.probeAt === 0 || this.now() - e.probeAt >= this.opts.cooldownMs)) {
      e.probeAt = this.now()
      return 'probe'
    }
    return Math.max(1, Math.ceil((this.opts.cooldownMs - waited) / 1000))
  }

  /** The service answered (any status): it is alive. */
  success (service: string): void {
    const e = this.entries.get(service)
    if (e === undefined) return
    e.failures = 0
    e.probeAt = 0
    if (e.state !== 'closed') this.move(service, e, 'closed')
  }

  /** A reply timed out. */
  failure (service: string): void {
    if (!this.opts.enabled) return
    let e = this.entries.get(service)
    if (e === undefined) {
      e = { state: 'closed', failures: 0, openedAt: 0, probeAt: 0 }
      this.entries.set(service, e)
    }
    e.failures++
    e.probeAt = 0
    if (e.state === 'half_open' || (e.state === 'closed' && e.failures >= this.opts.threshold)) {
      e.openedAt = this.now()
      this.move(service, e, 'open')
    }
  }

  /** A probe that ended neither way (client gone, broker lost) frees the slot for the next one. */
  release (service: string): void {
    const e = this.entries.get(service)
    if (e !== undefined) e.probeAt = 0
  }

  stateOf (service: string): BreakerState {
    return this.entries.get(service)?.state ?? 'closed'
  }

  private move (service: string, e: Entry, state: BreakerState): void {
    e.state = state
    this.onTransition(service, state)
  }
}
