// Careful mode: after a crash, one message at a time.
//
// A message with a lost delivery (a suspect) may be the one that crashed the
// dequeuer. If it ran beside others, a second crash would count a lost
// delivery against each of them too, and innocent messages travelling with a
// poison one would reach the dead-letter queue with it. So when a suspect
// arrives, consuming pauses, what is in flight settles (deliveries that were
// already on their way go back uncounted), the suspect runs alone, and the
// dequeuer goes on with a prefetch of 1 until `cleanRunToExit` messages in a
// row have gone through without trouble. Each pause cancels and restarts the
// consumer, so careful mode is entered once per crash episode, not per suspect.
import type { Gate } from './gate'

export interface IsolationDeps {
  readonly gate: Gate
  /** Resolves once the consumer is cancelled (after the gate closed). */
  readonly stopConsuming: () => Promise<void>
  /** Deliveries being processed now (the suspect included). */
  readonly busy: () => number
  /** Re-applies the prefetch (1 while careful). */
  readonly applyPrefetch: () => Promise<void>
  readonly onChange: (careful: boolean) => void
}

export class Isolation {
  private careful = false
  private entering: Promise<void> | null = null
  private clean = 0

  constructor (private readonly deps: IsolationDeps, private readonly cleanRunToExit: number) {}

  get active (): boolean {
    return this.careful
  }

  /** Runs a suspect's work alone. */
  async runSuspect (work: () => Promise<void>): Promise<void> {
    this.clean = 0
    if (this.careful && this.entering === null) {
      // Prefetch 1: nothing else is unacked while this runs.
      await work()
      return
    }
    if (this.entering !== null) {
      await this.entering
      await work()
      return
    }
    this.careful = true
    this.deps.onChange(true)
    const { gate } = this.deps
    gate.pause('isolating')
    let done!: () => void
    this.entering = new Promise((resolve) => { done = resolve })
    try {
      await this.deps.stopConsuming()
      while (this.deps.busy() > 1) await new Promise((resolve) => setTimeout(resolve, 5))
      await work()
      await this.deps.applyPrefetch()
    } finally {
      this.entering = null
      done()
      gate.resume('isolating')
    }
  }

  /** A message went through without trouble. */
  cleanRun (): void {
    if (!this.careful || this.entering !== null) return
    if (++this.clean < this.cleanRunToExit) return
    this.careful = false
    this.deps.onChange(false)
    void this.deps.applyPrefetch()
  }
}
