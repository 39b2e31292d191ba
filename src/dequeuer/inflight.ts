// Deliveries being processed, with one owner: the pipeline enters and
// leaves; drain and careful mode wait for the count to fall instead of
// polling it.

export class Inflight {
  private n = 0
  private waiters: Array<{ readonly max: number, readonly resolve: () => void }> = []

  get count (): number {
    return this.n
  }

  enter (): void {
    this.n++
  }

  leave (): void {
    this.n--
    if (this.waiters.length === 0) return
    const ready = this.waiters.filter((w) => this.n <= w.max)
    if (ready.length === 0) return
    this.waiters = this.waiters.filter((w) => this.n > w.max)
    for (const w of ready) w.resolve()
  }

  /** Resolves once at most `max` deliveries are being processed. */
  whenAtMost (max: number): Promise<void> {
    if (this.n <= max) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ max, resolve }))
  }
}
