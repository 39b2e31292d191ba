// What the enqueuer's request path shares: settings, broker parts, metrics and
// the few counters that drain and admission control read.
import type { Logger } from 'pino'
import type { BrokerConnection } from '../amqp/connection'
import type { EnqueuerConfig } from '../config/types'
import type { ResponseSender } from '../http/send'
import type { EnqueuerMetrics } from '../metrics/enqueuer'
import type { QueueChecker } from './queue-check'
import type { RpcPool } from './rpc-pool'
import type { ServiceBreakers } from './service-breaker'
import type { TokenSet } from './auth'
import type { Jobs } from './jobs/jobs'

export interface EnqueuerContext {
  readonly config: EnqueuerConfig
  readonly logger: Logger
  readonly metrics: EnqueuerMetrics
  readonly connection: BrokerConnection
  readonly pool: RpcPool
  readonly checker: QueueChecker
  readonly breakers: ServiceBreakers
  readonly tokens: TokenSet | null
  readonly jobs: Jobs | null
  /** Writes replies to clients; counts the bytes of those not yet written. */
  readonly sender: ResponseSender
  /** Requests being handled (admission control and drain). */
  inflight: number
  /** Readiness reports 503 (set first when a drain starts). */
  notReady: boolean
  /** New requests are refused with 503 and Connection: close. */
  draining: boolean
  /** Called when inflight drops to zero while draining. */
  onIdle: (() => void) | null
}

export function requestDone (ctx: EnqueuerContext): void {
  ctx.inflight--
  if (ctx.inflight === 0 && ctx.onIdle !== null) ctx.onIdle()
}
