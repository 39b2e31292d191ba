// What the dequeuer's message path shares.
import type { Logger } from 'pino'
import type { DequeuerConfig } from '../config/types'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { Batcher } from './batch'
import type { Breaker } from './breaker'
import type { Forwarder } from './forward'
import type { Gate } from './gate'
import type { Isolation } from './isolation'
import type { Publisher } from './publisher'

export interface DequeuerContext {
  readonly cfg: DequeuerConfig
  readonly logger: Logger
  /** Debug logging is on: per-message lines are built only then. */
  readonly debug: boolean
  readonly metrics: DequeuerMetrics
  readonly publisher: Publisher
  readonly forwarder: Forwarder
  readonly breaker: Breaker
  readonly gate: Gate
  readonly isolation: Isolation
  /** Set in batch mode: prepared messages go to the batch instead of one call each. */
  batcher: Batcher | null
  /** `{service}_requests` */
  readonly queue: string
  /** Deliveries being processed (drain waits for zero). */
  inflight: number
  onIdle: (() => void) | null
}
