// Careful mode: after a crash, suspects run alone.
//
// A message with a lost delivery (a suspect) may be the one that crashed the
// dequeuer. If it ran beside others, a second crash would count a lost
// delivery against each of them too, and innocent messages travelling with a
// poison one would reach the dead-letter queue with it. So when a suspect
// arrives, a consumer of prefetch one takes over from the full one (the new
// one registered before the old one is cancelled: the queue always has a
// consumer), deliveries already on their way go back uncounted, what is in
// flight settles, and the broker confirms it has their acks (that wait
// repeats until a round trip brings nothing new). A suspect that
// came through the consumer of prefetch one then runs: the queue itself
// counts that prefetch, so nothing else can arrive while it runs. One that
// came through the full consumer goes back (uncounted) and returns through
// the other.
//
// Not a channel-wide limit (basic.qos global), which RabbitMQ applies to the
// running consumer: set where there was none, it is told to the queue after
// the broker answers, so deliveries the queue sent meanwhile are not counted
// against it, and each of them, acked, lets one more through for as long as
// it holds. Seen in CI and in the poison test: the message published right
// after a poison one kept coming back beside it, was caught in each crash the
// poison caused, and was dead-lettered with it. Kept set for good instead, it
// costs the broker 25-30 µs per delivery (15-19% of its CPU per message here).
//
// Quorum queues pause consuming instead while a suspect runs, and consume
// again with a prefetch of one; every suspect then runs as it arrives. The
// consumer switch did not hold there: in the poison test innocent messages
// were still caught in a second crash (5 of 10 runs; the pause: 0 of 8).
// Why is not known; a cancel-ok that comes before deliveries already on
// their way is the suspect.
//
// Careful mode ends as soon as the suspects this dequeuer knows of have run:
// each lost delivery it counts (a recount copy) or gives back is one more to
// expect. Suspects counted elsewhere cannot be known, so careful mode also
// ends after a short quiet window with no new suspect. A suspect arriving
// later starts it again.
export interface IsolationDeps {
  /**
   * Quorum queues: stops (true) or restarts (false) consuming while a suspect
   * runs; null for classic queues, where the consumer of prefetch one holds.
   */
  readonly pauseConsuming: ((on: boolean) => Promise<void>) | null
  /** Holds consuming at one unacked delivery (true) or lets it go (false); resolves once the broker applied it. */
  readonly oneAtATime: (on: boolean) => Promise<void>
  /** Resolves once at most `n` deliveries are being processed. */
  readonly whenBusyAtMost: (n: number) => Promise<void>
  /** Deliveries being processed now. */
  readonly busy: () => number
  /**
   * Resolves once the broker has the acks of the deliveries that went back:
   * a suspect that kills the process must not take an ack still on its way
   * with it (the innocent message would count a lost delivery).
   */
  readonly acksReceived: () => Promise<void>
  /** Others were still arriving after the rounds allowed: the suspect runs anyway. */
  readonly onStragglers?: (busy: number) => void
  readonly onChange: (careful: boolean) => void
  /** How long careful mode outlasts the last suspect while suspects are still expected. */
  readonly quietMs: number
}

/** Round trips spent waiting for stragglers before a suspect runs anyway (each round needs a new one to repeat). */
const MAX_SETTLING_ROUNDS = 10

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

  /**
   * Runs a suspect's work (its call and its settling) with nothing else
   * unacked; or, when it did not come through the consumer of prefetch one
   * (`deliveredAlone`), gives it back instead, to return through that one.
   */
  async runAlone (work: () => Promise<void>, deliveredAlone: () => boolean, giveBack: () => Promise<void>): Promise<void> {
    if (this.expected > 0) this.expected--
    this.clearQuiet()
    this.runningAlone = true
    if (!this.careful) {
      this.careful = true
      this.deps.onChange(true)
    }
    try {
      await this.deps.pauseConsuming?.(true)
      await this.deps.oneAtATime(true)
      if (this.deps.pauseConsuming === null && !deliveredAlone()) {
        await giveBack()
        return
      }
      await this.othersSettled()
      await work()
    } finally {
      this.runningAlone = false
      await this.deps.pauseConsuming?.(false)
      if (this.expected === 0) this.leave()
      else this.quiet = setTimeout(() => this.leave(), this.deps.quietMs).unref()
    }
  }

  close (): void {
    this.clearQuiet()
  }

  /** Resolves once the suspect is the only delivery here and the broker has the others' acks. */
  private async othersSettled (): Promise<void> {
    for (let round = 1; ; round++) {
      await this.deps.whenBusyAtMost(1)
      await this.deps.acksReceived()
      const busy = this.deps.busy()
      if (busy <= 1) return
      if (round === MAX_SETTLING_ROUNDS) {
        this.deps.onStragglers?.(busy)
        return
      }
    }
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
