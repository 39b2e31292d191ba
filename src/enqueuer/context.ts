// What the enqueuer's request path shares: settings, broker parts, metrics and
// admission, which owns the counters that drain and admission control read.
import type { Logger } from 'pino'
import type { Admission } from './admission'
import type { ForwardedFor } from './forwarded'
import type { BrokerConnection } from '../amqp/connection'
import type { EnqueuerConfig } from '../config/types'
import type { ResponseSender } from '../http/send'
import type { EnqueuerMetrics } from '../metrics/enqueuer'
import type { QueueChecker } from './queue-check'
import type { RpcPool } from './rpc-pool'
import type { ServiceBreakers } from './service-breaker'
import type { TokenSet } from './auth'
import type { Jobs } from './jobs/jobs'
import type { Idempotency } from './idempotency/idempotency'
import type { ColdStart } from './cold-start'
import type { Tracing } from '../tracing/tracing'

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
  /** Null unless ENQUEUER_IDEMPOTENCY=true. */
  readonly idempotency: Idempotency | null
  /** Appends the peer to X-Forwarded-For (and drops untrusted peers' forwarding headers). */
  readonly forwarded: ForwardedFor
  /** In-flight counts, intake and drain: the one owner of the request path's counters. */
  readonly admission: Admission
  /** Writes replies to clients; counts the bytes of those not yet written. */
  readonly sender: ResponseSender
  /** Null unless ENQUEUER_NO_CONSUMERS=wait. */
  readonly coldStart: ColdStart | null
  /** The `x-relayq-accept-stream` value requests carry, or null when this enqueuer takes no streams (stream.ts). */
  readonly streamAccept: string | null
  /** Null unless tracing is on (OTEL_*). */
  readonly tracing: Tracing | null
}
