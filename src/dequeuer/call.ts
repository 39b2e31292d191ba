// Step 2: the call to the service. A strategy takes prepared messages and
// gives back one result per message, nothing else: what the result means and
// what to do with the delivery is decided and carried out after it.
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { Breaker, CallResult } from './breaker'
import type { Forwarder } from './forward'
import type { Prepared } from './prepare'
import type { StreamChannel } from './stream'

export interface CallStrategy {
  /** The call for one message (a batching strategy may gather it with others). */
  call: (p: Prepared) => Promise<CallResult>
  /** The call for one message, alone and now (a suspect). */
  callAlone: (p: Prepared) => Promise<CallResult>
  close: () => Promise<void>
}

/** One HTTP call per message, through the breaker. */
export class SingleCall implements CallStrategy {
  constructor (private readonly forwarder: Forwarder, private readonly breaker: Breaker, private readonly metrics: DequeuerMetrics, private readonly streams: StreamChannel | null = null) {}

  async call (p: Prepared): Promise<CallResult> {
    const started = performance.now()
    // One header look-up: a requester that takes streams may get this answer as one (stream.ts).
    const stream = this.streams === null ? null : this.streams.offer(p)
    const result = await this.breaker.run(() => this.forwarder.forward(p.forward, stream))
    this.metrics.downstream((performance.now() - started) / 1000)
    return result
  }

  callAlone (p: Prepared): Promise<CallResult> {
    return this.call(p)
  }

  close (): Promise<void> {
    return this.forwarder.close()
  }
}
