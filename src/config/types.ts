export type Mode = 'enqueuer' | 'dequeuer'
export type QueueType = 'classic' | 'quorum'
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface TlsConfig {
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
  readonly passphrase?: string
  readonly servername?: string
  readonly insecure: boolean
}

export interface BrokerConfig {
  /** amqp(s):// URLs with credentials; tried in turn. */
  readonly urls: readonly string[]
  readonly heartbeatSeconds: number
  readonly connectTimeoutMs: number
  readonly reconnectInitialMs: number
  readonly reconnectMaxMs: number
  /** The broker's max_message_size; 0: its version's default, learned at connect. */
  readonly maxMessageBytes: number
  readonly tls: TlsConfig
}

export interface EnqueuerBreakerConfig {
  readonly enabled: boolean
  readonly threshold: number
  readonly cooldownMs: number
}

export interface AsyncConfig {
  /** Jobs are possible at all (ASYNC_JOBS or ASYNC_MODE). */
  readonly enabled: boolean
  readonly always: boolean
  readonly jobTtlSeconds: number
  readonly authHeader: string
  readonly requireAuth: boolean
  readonly resultsQueue: string
  readonly resultsQueueType: QueueType
  readonly maxJobs: number
  readonly maxResultBytes: number
  readonly maxStoredBytes: number
  readonly callbackAllowedHosts: readonly string[]
  /** Redis URL of the job store; null: in memory. */
  readonly redisUrl: string | null
}

export interface EnqueuerConfig {
  readonly port: number
  readonly host: string
  readonly replyTimeoutMs: number
  readonly maxBodyBytes: number
  readonly services: ReadonlySet<string> | null
  readonly channels: number
  readonly publishTimeoutMs: number
  readonly persistent: boolean
  readonly maxInflight: number
  /** Requests in flight one service may hold (the default already resolved). */
  readonly maxInflightPerService: number
  readonly maxConnections: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly sendTimeoutMs: number
  readonly maxBufferedBytes: number
  /** ENQUEUER_STREAM_IDLE_TIMEOUT_MS; 0 takes no streams. */
  readonly streamIdleTimeoutMs: number
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  readonly maxUrlBytes: number
  readonly queueCheckTtlMs: number
  /** Checks per second of names not known to exist; 0: no limit. */
  readonly newServiceChecksPerSecond: number
  readonly breaker: EnqueuerBreakerConfig
  readonly authTokensFile: string | null
  /** CIDR ranges (`address/prefix`) of trusted front proxies; null: every peer's forwarding headers are kept. */
  readonly trustedProxies: readonly string[] | null
  readonly drainDelayMs: number
  readonly workers: number
  readonly admin: { readonly port: number, readonly host: string } | null
  readonly async: AsyncConfig
  readonly idempotency: IdempotencyConfig
  readonly coldStart: ColdStartConfig
}

/** Scale from zero (docs/scale-to-zero.md). */
export interface ColdStartConfig {
  readonly noConsumers: 'refuse' | 'wait'
  readonly maxWaiting: number
  /** The KEDA external scaler's gRPC port; null: off. */
  readonly scalerPort: number | null
}

export interface IdempotencyConfig {
  readonly enabled: boolean
  readonly ttlSeconds: number
  readonly maxBodyBytes: number
  readonly graceMs: number
  /** The same store as async jobs: Redis when configured, else memory. */
  readonly redisUrl: string | null
}

export interface BreakerConfig {
  readonly enabled: boolean
  readonly errorPercent: number
  readonly volume: number
  readonly windowMs: number
  readonly resetMs: number
  readonly failureStatuses: ReadonlySet<number>
}

export interface HealthConfig {
  readonly url: URL | null
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly maxRetries: number
}

export interface BatchConfig {
  readonly enabled: boolean
  readonly url: URL | null
  readonly size: number | null
  readonly windowMs: number
  readonly timeoutMs: number
}

export interface DequeuerConfig {
  readonly service: string
  /** Where answers to keyed requests are recorded (null: not recorded). */
  readonly idempotency: { readonly redisUrl: string, readonly ttlSeconds: number } | null
  readonly downstreamUrl: URL
  readonly downstreamTimeoutMs: number
  readonly concurrency: number
  readonly connections: number
  readonly admin: { readonly port: number, readonly host: string }
  readonly queueType: QueueType
  readonly declareQueues: boolean
  readonly maxAttempts: number
  readonly retryDelayMs: number
  readonly retryMaxDelayMs: number
  readonly retryStatuses: ReadonlySet<number>
  readonly expired: 'dead-letter' | 'drop'
  readonly deliveryLimit: number
  readonly maxReplyBytes: number
  /** DEQUEUER_STREAM_THRESHOLD_BYTES; 0 never streams. */
  readonly streamThresholdBytes: number
  readonly maxMessageBytes: number
  /** RELAYQ_MESSAGE_KEY: signs relayq's control headers; null trusts them unsigned. */
  readonly messageKey: string | null
  readonly messageTtlMs: number
  /** x-max-length (with reject-publish) of the request queue; 0: none. */
  readonly maxLength: number
  readonly dlqPollIntervalMs: number
  /** How long consuming may stay lost (channel closed or consumer cancelled by the broker) before liveness fails. */
  readonly consumerRecoveryLimitMs: number
  readonly breaker: BreakerConfig
  readonly health: HealthConfig
  readonly batch: BatchConfig
}

export interface Config {
  readonly mode: Mode
  readonly logLevel: LogLevel
  readonly metricsEnabled: boolean
  readonly shutdownTimeoutMs: number
  readonly broker: BrokerConfig
  readonly enqueuer: EnqueuerConfig | null
  readonly dequeuer: DequeuerConfig | null
  /** OpenTelemetry tracing (the OTEL_* variables); null when off. */
  readonly tracing: TracingConfig | null
}

export type OtlpProtocol = 'http/protobuf' | 'http/json'
export type SamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio'

export interface TracingConfig {
  /** The traces endpoint, with its path (…/v1/traces). */
  readonly url: string
  readonly protocol: OtlpProtocol
  readonly headers: Readonly<Record<string, string>>
  readonly serviceName: string
  readonly resource: Readonly<Record<string, string>>
  readonly sampler: SamplerName
  /** The ratio of the traceidratio samplers, 0 to 1. */
  readonly ratio: number
  /** Spans waiting for export (queued or being sent); beyond it spans are dropped and counted. */
  readonly maxQueueSize: number
  readonly exportTimeoutMs: number
}

/** What the dlq tool needs: the broker and the service's topology settings. */
export interface DlqToolConfig {
  readonly logLevel: LogLevel
  readonly broker: BrokerConfig
  readonly queueType: QueueType
}

/** What `relayq declare` needs: the broker and the dequeuer's topology settings. */
export interface DeclareToolConfig {
  readonly broker: BrokerConfig
  readonly queueType: QueueType
  readonly declareQueues: boolean
  readonly deliveryLimit: number
  readonly messageTtlMs: number
  readonly maxLength: number
  readonly retryDelayMs: number
  readonly retryMaxDelayMs: number
  readonly maxAttempts: number
}
