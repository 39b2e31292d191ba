// Admission control for the enqueuer, and the one owner of its counters: how
// many requests are in flight (in all, and per service), whether intake is
// closed (a drain), and who waits for the last request to end.
//
// What a request takes when it is admitted (its slot, later a breaker probe or
// a pending job) is held by one Ticket with one idempotent release(). The
// handler releases it from the response's close as well as on each ending it
// knows, so an ending nobody thought of cannot leak a slot.

export type Refusal = 'RQ_ERR_DRAINING' | 'RQ_ERR_OVERLOADED' | 'RQ_ERR_SERVICE_OVERLOADED'

export class Admission {
  private count = 0
  private readonly perService = new Map<string, number>()
  private closed = false
  private idleWaiters: Array<() => void> = []
  // One function for every ticket: a request holds no closure of its own for its slot.
  private readonly freeOne = (service: string): void => this.free(service)

  /** `maxPerService`: the share of `maxInflight` one service may hold, so a silent one cannot take every slot. */
  constructor (readonly maxInflight: number, readonly maxPerService: number = maxInflight) {}

  get inflight (): number {
    return this.count
  }

  inflightOf (service: string): number {
    return this.perService.get(service) ?? 0
  }

  /** Intake is closed: new requests are refused (drain). */
  get draining (): boolean {
    return this.closed
  }

  /** A ticket for one request to `service`, or why there is none. */
  admit (service: string): Ticket | Refusal {
    if (this.closed) return 'RQ_ERR_DRAINING'
    if (this.count >= this.maxInflight) return 'RQ_ERR_OVERLOADED'
    const held = this.perService.get(service) ?? 0
    if (held >= this.maxPerService) return 'RQ_ERR_SERVICE_OVERLOADED'
    this.count++
    this.perService.set(service, held + 1)
    return new Ticket(service, this.freeOne)
  }

  /** Stops intake; admit() refuses from now on. */
  close (): void {
    this.closed = true
  }

  /** Resolves true once nothing is in flight, or false after `timeoutMs`. */
  idle (timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done)
        resolve(false)
      }, timeoutMs)
      this.idleWaiters.push(done)
    })
  }

  private free (service: string): void {
    this.count--
    const held = (this.perService.get(service) ?? 1) - 1
    // Names come from clients: keep no entry for a service with nothing in flight.
    if (held <= 0) this.perService.delete(service)
    else this.perService.set(service, held)
    if (this.count === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }
}

/** What one admitted request holds; release() gives all of it back, once, whatever the path. */
export class Ticket {
  private released = false
  // Most requests hold nothing else: the list is made by the first hold().
  private undo: Array<(() => void) | null> | null = null

  constructor (readonly service: string, private readonly freeSlot: (service: string) => void) {}

  get isReleased (): boolean {
    return this.released
  }

  /**
   * Something else the request holds until it ends (a breaker probe, a pending
   * job): `undo` runs on release. The returned function keeps the thing instead
   * (a job whose 202 went out must not be deleted when the request ends).
   */
  hold (undo: () => void): () => void {
    if (this.released) {
      undo()
      return () => {}
    }
    const held = (this.undo ??= [])
    const i = held.push(undo) - 1
    return () => { held[i] = null }
  }

  release (): void {
    if (this.released) return
    this.released = true
    this.freeSlot(this.service)
    const held = this.undo
    this.undo = null
    if (held !== null) for (const u of held) u?.()
  }
}
