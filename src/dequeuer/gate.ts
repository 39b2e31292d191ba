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
  | 'queue_missing' // the broker cancelled the consumer (queue deleted)
  | 'isolating' // a suspect message is being forwarded alone

export class Gate {
  private readonly reasons = new Set<PauseReason>(['starting'])

  constructor (private readonly onChange: () => void) {}

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
    this.onChange()
  }

  resume (reason: PauseReason): void {
    if (this.reasons.delete(reason)) this.onChange()
  }
}
