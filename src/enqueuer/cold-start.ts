// Scale from zero (ENQUEUER_NO_CONSUMERS=wait): a request for a service whose
// queue has no consumer is published anyway and waits for a pod to start,
// within its own deadline. The message carries that deadline as its
// expiration, so a pod that starts after the caller gave up never runs it.
//
// This module only counts and times the waiting: how many requests of each
// service wait for a first consumer (bounded by ENQUEUER_MAX_WAITING, so a
// service that never starts cannot hold this process's memory: the KEDA
// add-on's interceptors ran out of it on an unbounded hold queue,
// kedacore/http-add-on#1732), and when the first consumer showed up, for the
// answer's x-relayq-cold-start-ms. While any request of a service waits, the
// queue is looked at every POLL_MS, through the queue checker's cache.
import type { Ticket } from './admission'
import type { QueueState } from './queue-check'

/** How often a service with waiting requests is looked at for a consumer. */
const POLL_MS = 200

export interface ColdStartDeps {
  readonly maxWaiting: number
  /** The queue checker's state (cached, refreshed at most every half second for a queue without consumers). */
  readonly state: (queue: string) => QueueState | Promise<QueueState>
  readonly observe: (service: string, seconds: number) => void
  /** A consumer was seen (tells the queue checker's cache). */
  readonly sawConsumer: (queue: string) => void
}

/** One request waiting for its service's first consumer. */
export class Waiting {
  /** When the first consumer was seen (performance.now()); null while none has been. */
  private consumerAt: number | null = null

  constructor (private readonly owner: ServiceWait, readonly startedAt: number) {}

  /** Still waiting: no consumer has been seen since it was published. */
  get waiting (): boolean {
    return this.consumerAt === null
  }

  /** The reply arrived: ms waited for the first consumer (the reply itself proves one, if the poll has not seen it yet). */
  answered (): number {
    if (this.consumerAt === null) this.owner.consumerSeen()
    return Math.round((this.consumerAt ?? performance.now()) - this.startedAt)
  }

  /** @internal the service's first consumer was seen. */
  served (at: number): void {
    this.consumerAt = at
  }
}

class ServiceWait {
  readonly requests = new Set<Waiting>()
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly cold: ColdStart, readonly service: string, private readonly queue: string) {}

  add (w: Waiting): void {
    this.requests.add(w)
    this.timer ??= setInterval(() => this.poll(), POLL_MS)
  }

  remove (w: Waiting): void {
    this.requests.delete(w)
    if (this.requests.size === 0) this.stop()
  }

  consumerSeen (): void {
    const now = performance.now()
    for (const w of this.requests) {
      w.served(now)
      this.cold.deps.observe(this.service, (now - w.startedAt) / 1000)
    }
    this.requests.clear()
    this.stop()
    this.cold.deps.sawConsumer(this.queue)
  }

  private poll (): void {
    let state: QueueState | Promise<QueueState>
    try {
      state = this.cold.deps.state(this.queue)
    } catch {
      return
    }
    if (state instanceof Promise) state.then((s) => this.check(s), () => {})
    else this.check(state)
  }

  private check (s: QueueState): void {
    if (s.consumers > 0 && this.requests.size > 0) this.consumerSeen()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.cold.forget(this)
  }
}

export class ColdStart {
  private readonly services = new Map<string, ServiceWait>()
  private readonly listeners = new Set<(service: string) => void>()

  constructor (readonly deps: ColdStartDeps) {}

  /**
   * A request for a service without a consumer: its Waiting, released with
   * its ticket, or 'full' when ENQUEUER_MAX_WAITING of them already wait.
   */
  admit (service: string, queue: string, ticket: Ticket, startedAt: number): Waiting | 'full' {
    let s = this.services.get(service)
    if (s !== undefined && s.requests.size >= this.deps.maxWaiting) return 'full'
    if (s === undefined) {
      s = new ServiceWait(this, service, queue)
      this.services.set(service, s)
    }
    const w = new Waiting(s, startedAt)
    const first = s.requests.size === 0
    s.add(w)
    const owner = s
    ticket.hold(() => owner.remove(w))
    // The scaler's stream pushes "active" on the first waiting request, without waiting for its poll.
    if (first) for (const l of this.listeners) l(service)
    return w
  }

  /** Requests of this service waiting for a first consumer in this process. */
  waiting (service: string): number {
    return this.services.get(service)?.requests.size ?? 0
  }

  /** Every service with waiting requests, and how many (the gauge). */
  counts (): Map<string, number> {
    const out = new Map<string, number>()
    for (const [name, s] of this.services) out.set(name, s.requests.size)
    return out
  }

  /** Called when a service goes from none to one waiting request. */
  onWaiting (listener: (service: string) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Stops the polls; the requests themselves end with the enqueuer's drain. */
  close (): void {
    for (const s of [...this.services.values()]) s.stop()
  }

  /** @internal */
  forget (s: ServiceWait): void {
    if (this.services.get(s.service) === s && s.requests.size === 0) this.services.delete(s.service)
  }
}
