// Why the dequeuer is not consuming right now. It consumes only while no
// reason holds; each change is reconciled by the consumer (basic.consume or
// basic.cancel) and shows in /readyz.

export type PauseReason =
  | 'starting' // topology not declared yet
  | 'broker' // the consuming connection is down
  | 'publisher' // the publishing connection is down: replies could not go out
  | 'unhealthy' // HEALTH_CHECK_URL says the service is not healthy
  | 'breaker' // the circuit breaker is open
  | 'draining' // SIGTERM or POST /drain
  | 'isolating' // quorum queues: a suspect message is being forwarded alone

export class Gate {
  private readonly reasons = new Set<PauseReason>(['starting'])
  private listener: () => void = () => {}

  /** The consumer follows the gate: told of every change. */
  subscribe (listener: () => void): void {
    this.listener = listener
  }

  get open (): boolean {
    return this.reasons.size === 0
  }

  has (reason: PauseReason): boolean {
    return this.reasons.has(reason)
  }

  /** True when nothing but `reason` holds. */
  only (reason: PauseReason): boolean {
    return this.reasons.size === 1 && this.reasons.has(reason)
  }

  /** Comma-separated reasons, for /readyz and logs. */
  describe (): string {
    return [...this.reasons].join(',')
  }

  pause (reason: PauseReason): void {
    if (this.reasons.has(reason)) return
    this.reasons.add(reason)
    this.listener()
  }

  resume (reason: PauseReason): void {
    if (this.reasons.delete(reason)) this.listener()
  }
}

export type OneAtATimeReason =
  | 'careful' // a suspect message runs alone (isolation.ts)
  | 'probe' // the half-open breaker probes with one real message

/**
 * Why deliveries are held to one unacked at a time: a consumer of prefetch
 * one takes over from the one of DEQUEUER_CONCURRENCY, and back
 * (Consumer.setPrefetch); the queue is never without a consumer for it.
 */
export class OneAtATime {
  private readonly reasons = new Set<OneAtATimeReason>()
  private last: Promise<void> = Promise.resolve()

  constructor (private readonly apply: (limit: number) => Promise<void>) {}

  get on (): boolean {
    return this.reasons.size > 0
  }

  /** Resolves once the broker has the limit that follows from this change. */
  set (reason: OneAtATimeReason, on: boolean): Promise<void> {
    const before = this.on
    if (on) this.reasons.add(reason)
    else this.reasons.delete(reason)
    if (this.on !== before) this.last = this.apply(this.on ? 1 : 0)
    return this.last
  }
}
