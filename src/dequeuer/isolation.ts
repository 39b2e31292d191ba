// Careful mode: after a crash, suspects run alone.
//
// A message with a lost delivery (a suspect) may be the one that crashed the
// dequeuer. If it ran beside others, a second crash would count a lost
// delivery against each of them too, and innocent messages travelling with a
// poison one would reach the dead-letter queue with it. So when a suspect
// arrives, deliveries are held to one unacked at a time, consuming pauses
// (a basic.cancel: the broker sends its cancel-ok after the last delivery to
// the consumer), deliveries already on their way go back uncounted, what is
// in flight settles, the broker confirms it has their acks, and the suspect
// runs alone; then consuming resumes, still one at a time.
//
// The one-at-a-time limit alone is not enough, and the pause is not there
// for speed. On a classic queue the limit is channel-wide, and RabbitMQ
// undercounts it by every delivery that was already on its way when it was
// set: each such delivery, acked, lets one more through for as long as the
// limit holds. Seen in CI and in the poison test: the message published
// right after a poison one kept coming back beside it, was caught in each
// crash it caused, and was dead-lettered with it. The pause costs a queue
// with a single dequeuer its consumer for as long as the suspect runs.
//
// Careful mode ends as soon as the suspects this dequeuer knows of have run:
// each lost delivery it counts (a recount copy) or gives back is one more to
// expect. Suspects counted elsewhere cannot be known, so careful mode also
// ends after a short quiet window with no new suspect. A suspect arriving
// later starts it again.
export interface IsolationDeps {
  /** Stops (true) or restarts (false) consuming while a suspect runs; resolves once the broker has done so. */
  readonly pauseConsuming: (on: boolean) => Promise<void>
  /** Holds the channel at one unacked delivery (true) or lets it go (false); resolves once the broker applied it. */
  readonly oneAtATime: (on: boolean) => Promise<void>
  /** Resolves once at most `n` deliveries are being processed. */
  readonly whenBusyAtMost: (n: number) => Promise<void>
  /**
   * Resolves once the broker has the acks of the deliveries that went back:
   * a suspect that kills the process must not take an ack still on its way
   * with it (the innocent message would count a lost delivery).
   */
  readonly acksReceived: () => Promise<void>
  readonly onChange: (careful: boolean) => void
  /** How long careful mode outlasts the last suspect while suspects are still expected. */
  readonly quietMs: number
}

export class Isolation {
  private careful = false
  private runningAlone = false
  private expected = 0
  private quiet: NodeJS.Timeout | null = null

  constructor (private readonly deps: IsolationDeps) {}

  get active (): boolean {
    return this.careful
  }

  /** A suspect waits to run or runs alone: other deliveries go back uncounted. */
  get holding (): boolean {
    return this.runningAlone
  }

  /** Suspects known to be on their way back. */
  get expecting (): number {
    return this.expected
  }

  /** A suspect copy was published (a counted lost delivery, or a suspect given back). */
  expect (): void {
    this.expected++
  }

  /** Runs a suspect's work (its call and its settling) with nothing else unacked. */
  async runAlone (work: () => Promise<void>): Promise<void> {
    if (this.expected > 0) this.expected--
    this.clearQuiet()
    this.runningAlone = true
    if (!this.careful) {
      this.careful = true
      this.deps.onChange(true)
    }
    try {
      await this.deps.pauseConsuming(true)
      await this.deps.oneAtATime(true)
      await this.deps.whenBusyAtMost(1)
      await this.deps.acksReceived()
      await work()
    } finally {
      this.runningAlone = false
      await this.deps.pauseConsuming(false)
      if (this.expected === 0) this.leave()
      else this.quiet = setTimeout(() => this.leave(), this.deps.quietMs).unref()
    }
  }

  close (): void {
    this.clearQuiet()
  }

  private leave (): void {
    this.clearQuiet()
    if (!this.careful || this.runningAlone) return
    this.careful = false
    this.expected = 0
    this.deps.onChange(false)
    void this.deps.oneAtATime(false)
  }

  private clearQuiet (): void {
    if (this.quiet !== null) clearTimeout(this.quiet)
    this.quiet = null
  }
}
