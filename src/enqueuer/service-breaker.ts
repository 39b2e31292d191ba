// A breaker per service on the enqueuer. When a service's replies keep timing
// out (or its queue has no consumer), piling up more requests only makes more
// clients wait for a 504. After `threshold` consecutive such failures the
// service fails fast (503 + Retry-After) for a cool-down; then one request at
// a time is let through as a probe, and its success closes the breaker.

export type BreakerState = 'closed' | 'half_open' | 'open'

interface Entry {
  state: BreakerState
  failures: number
  openedAt: number
  probing: boolean
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
    if (e.state === 'half_open' && !e.probing) {
      e.probing = true
      return 'probe'
    }
    return Math.max(1, Math.ceil((this.opts.cooldownMs - waited) / 1000))
  }

  /** The service answered (any status): it is alive. */
  success (service: string): void {
    const e = this.entries.get(service)
    if (e === undefined) return
    e.failures = 0
    e.probing = false
    if (e.state !== 'closed') this.move(service, e, 'closed')
  }

  /** A reply timed out, or the queue had no consumer. */
  failure (service: string): void {
    if (!this.opts.enabled) return
    let e = this.entries.get(service)
    if (e === undefined) {
      e = { state: 'closed', failures: 0, openedAt: 0, probing: false }
      this.entries.set(service, e)
    }
    e.failures++
    e.probing = false
    if (e.state === 'half_open' || (e.state === 'closed' && e.failures >= this.opts.threshold)) {
      e.openedAt = this.now()
      this.move(service, e, 'open')
    }
  }

  /** A probe that ended neither way (client gone, broker lost) frees the slot for the next one. */
  release (service: string): void {
    const e = this.entries.get(service)
    if (e !== undefined) e.probing = false
  }

  stateOf (service: string): BreakerState {
    return this.entries.get(service)?.state ?? 'closed'
  }

  private move (service: string, e: Entry, state: BreakerState): void {
    e.state = state
    this.onTransition(service, state)
  }
}
