// loadConfig(env) parses every variable the chosen mode reads, collects every
// problem, and throws them together: one start-up tells the operator all that
// is wrong, each line naming its variable.
import { readFileSync } from 'node:fs'
import { SPEC, type DefaultedName, type SpecName, type SpecValue, type VarSpec } from './spec'
import { bodyLimitProblem } from './broker-limits'
import { isServiceLink } from './service-links'
import { readTracing } from './tracing'
import type { BrokerConfig, Config, DeclareToolConfig, DequeuerConfig, DlqToolConfig, EnqueuerConfig, TlsConfig } from './types'

export type Env = Readonly<Record<string, string | undefined>>
export type ReadFile = (path: string) => string

export interface ConfigProblem {
  readonly variable: string
  readonly message: string
}

export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[]
  constructor (problems: readonly ConfigProblem[]) {
    super('invalid configuration:\n' + problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

const defaultReadFile: ReadFile = (path) => readFileSync(path, 'utf8')

/** Reads variables on demand, remembering every problem instead of stopping at the first. */
export class Reader {
  readonly problems: ConfigProblem[] = []
  constructor (private readonly env: Env, private readonly readFile: ReadFile) {}

  problem (variable: string, message: string): void {
    this.problems.push({ variable, message })
  }

  raw (spec: VarSpec): string | undefined {
    const direct = this.env[spec.name]
    const fileVar = `${spec.name}_FILE`
    const file = spec.file === true ? this.env[fileVar] : undefined
    if (direct !== undefined && direct !== '' && file !== undefined && file !== '') {
      this.problem(spec.name, `set both ${spec.name} and ${fileVar}; set only one`)
      return undefined
    }
    if (file !== undefined && file !== '') {
      try {
        return this.readFile(file).replace(/\r?\n$/, '')
      } catch (err) {
        this.problem(fileVar, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
        return undefined
      }
    }
    if (direct === '' || (direct !== undefined && isServiceLink(spec.name, direct))) return undefined
    return direct
  }

  /**
   * The parsed value; never undefined for a variable with a default (the
   * table's default is the only place it is written). An invalid value is a
   * problem, and the default stands in so the rest can still be checked.
   */
  get<K extends SpecName>(name: K): K extends DefaultedName ? SpecValue<K> : SpecValue<K> | undefined
  get<K extends SpecName>(name: K): SpecValue<K> | undefined {
    const spec = SPEC[name] as VarSpec<SpecValue<K>>
    const raw = this.raw(spec)
    if (raw !== undefined) {
      try {
        return spec.parse(raw)
      } catch (err) {
        // A secret's parse error must not echo the secret back into the logs.
        this.problem(spec.name, spec.secret === true ? 'invalid value' : (err as Error).message)
      }
    }
    return spec.default === undefined ? undefined : spec.parse(spec.default)
  }

  /** Whether the variable (or its _FILE) was given, as opposed to defaulted. */
  given (name: SpecName): boolean {
    const set = (v: string | undefined): boolean => v !== undefined && v !== ''
    return set(this.env[name]) || (SPEC[name] as VarSpec).file === true && set(this.env[`${name}_FILE`])
  }

  need<K extends SpecName>(name: K, why: string): SpecValue<K> | undefined {
    const value = this.get(name)
    if (value === undefined && !this.problems.some((p) => p.variable === name)) {
      this.problem(name, `required ${why}`)
    }
    return value
  }

  file (name: SpecName): string | undefined {
    const path = this.get(name) as string | undefined
    if (path === undefined) return undefined
    try {
      return this.readFile(path)
    } catch (err) {
      this.problem(name, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
      return undefined
    }
  }
}

export function loadConfig (env: Env, readFile: ReadFile = defaultReadFile): Config {
  const r = new Reader(env, readFile)
  const mode = r.need('RELAYQ_MODE', '(enqueuer or dequeuer)')
  const broker = readBroker(r)
  const config: Config = {
    mode: mode ?? 'enqueuer',
    logLevel: r.get('LOG_LEVEL'),
    metricsEnabled: r.get('METRICS_ENABLED'),
    shutdownTimeoutMs: Math.round(r.get('SHUTDOWN_TIMEOUT_SECONDS') * 1000),
    broker,
    enqueuer: mode === 'enqueuer' ? readEnqueuer(r) : null,
    dequeuer: mode === 'dequeuer' ? readDequeuer(r) : null,
    tracing: readTracing(r, mode ?? 'enqueuer'),
  }
  const enq = config.enqueuer
  if (enq !== null && broker.maxMessageBytes > 0) {
    const why = bodyLimitProblem(enq.maxBodyBytes, enq.maxHeaderBytes, broker.maxMessageBytes, 'RABBITMQ_MAX_MESSAGE_BYTES')
    if (why !== null) r.problem('ENQUEUER_MAX_BODY_BYTES', why)
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems)
  return deepFreeze(config)
}

/** The dlq tool needs no mode: just the broker and the service's queue type. */
export function loadDlqToolConfig (env: Env, readFile: ReadFile = defaultReadFile): DlqToolConfig {
  const r = new Reader(env, readFile)
  const config: DlqToolConfig = {
    logLevel: r.get('LOG_LEVEL'),
    broker: readBroker(r),
    queueType: r.get('DEQUEUER_QUEUE_TYPE'),
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems)
  return deepFreeze(config)
}

/** `relayq declare` reads the dequeuer's topology variables, so the queues it makes are the ones the dequeuer expects. */
export function loadDeclareToolConfig (env: Env, readFile: ReadFile = defaultReadFile): DeclareToolConfig {
  const r = new Reader(env, readFile)
  const maxAttempts = r.get('DEQUEUER_MAX_ATTEMPTS')
  const deliveryLimit = r.get('DEQUEUER_DELIVERY_LIMIT')
  if (deliveryLimit <= maxAttempts) r.problem('DEQUEUER_DELIVERY_LIMIT', `must exceed DEQUEUER_MAX_ATTEMPTS (${maxAttempts})`)
  const config: DeclareToolConfig = {
    broker: readBroker(r),
    queueType: r.get('DEQUEUER_QUEUE_TYPE'),
    declareQueues: r.get('DEQUEUER_DECLARE_QUEUES'),
    deliveryLimit,
    messageTtlMs: r.get('MESSAGE_TTL_MS'),
    maxLength: r.get('DEQUEUER_MAX_LENGTH'),
    retryDelayMs: r.get('DEQUEUER_RETRY_DELAY_MS'),
    retryMaxDelayMs: r.get('DEQUEUER_RETRY_MAX_DELAY_MS'),
    maxAttempts,
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems)
  return deepFreeze(config)
}

function readBroker (r: Reader): BrokerConfig {
  const initial = r.get('RABBITMQ_RECONNECT_INITIAL_MS')
  const max = r.get('RABBITMQ_RECONNECT_MAX_MS')
  if (max < initial) r.problem('RABBITMQ_RECONNECT_MAX_MS', `must be at least RABBITMQ_RECONNECT_INITIAL_MS (${initial})`)
  return {
    urls: readBrokerUrls(r),
    heartbeatSeconds: r.get('RABBITMQ_HEARTBEAT_SECONDS'),
    connectTimeoutMs: r.get('RABBITMQ_CONNECT_TIMEOUT_MS'),
    reconnectInitialMs: initial,
    reconnectMaxMs: max,
    maxMessageBytes: r.get('RABBITMQ_MAX_MESSAGE_BYTES'),
    tls: readTls(r),
  }
}

function readBrokerUrls (r: Reader): string[] {
  const list = r.get('RABBITMQ_URL')
  if (list !== undefined) {
    const urls = list.split(',').map((s) => s.trim()).filter((s) => s !== '')
    if (urls.length === 0) r.problem('RABBITMQ_URL', 'no URL given')
    urls.forEach((url, i) => {
      const problem = brokerUrlProblem(url)
      // Never echo the URL: it usually holds the password.
      if (problem !== null) r.problem('RABBITMQ_URL', `entry ${i + 1} ${problem}`)
    })
    return urls
  }
  const tls = r.get('RABBITMQ_TLS')
  const host = r.get('RABBITMQ_HOST')
  const port = r.get('RABBITMQ_PORT')
  const user = encodeURIComponent(r.get('RABBITMQ_USER'))
  const pass = encodeURIComponent(r.get('RABBITMQ_PASSWORD'))
  const vhost = encodeURIComponent(r.get('RABBITMQ_VHOST'))
  const h = host.includes(':') ? `[${host}]` : host
  return [`${tls ? 'amqps' : 'amqp'}://${user}:${pass}@${h}:${port}/${vhost}`]
}

function brokerUrlProblem (raw: string): string | null {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'is not a valid URL'
  }
  if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') return 'must start with amqp:// or amqps://'
  if (url.hostname === '') return 'has no host'
  return null
}

function readTls (r: Reader): TlsConfig {
  const tls: { -readonly [K in keyof TlsConfig]: TlsConfig[K] } = { insecure: r.get('RABBITMQ_TLS_INSECURE') }
  const ca = r.file('RABBITMQ_CA_FILE')
  const cert = r.file('RABBITMQ_CERT_FILE')
  const key = r.file('RABBITMQ_KEY_FILE')
  const passphrase = r.get('RABBITMQ_KEY_PASSPHRASE')
  const servername = r.get('RABBITMQ_TLS_SERVERNAME')
  if ((cert === undefined) !== (key === undefined)) {
    r.problem(cert === undefined ? 'RABBITMQ_CERT_FILE' : 'RABBITMQ_KEY_FILE', 'mutual TLS needs both RABBITMQ_CERT_FILE and RABBITMQ_KEY_FILE')
  }
  if (ca !== undefined) tls.ca = ca
  if (cert !== undefined) tls.cert = cert
  if (key !== undefined) tls.key = key
  if (passphrase !== undefined) tls.passphrase = passphrase
  if (servername !== undefined) tls.servername = servername
  return tls
}

function readEnqueuer (r: Reader): EnqueuerConfig {
  const replyTimeoutMs = Math.round(r.get('ENQUEUER_REPLY_TIMEOUT') * 1000)
  const services = r.get('ENQUEUER_SERVICES')
  const maxHeaderBytes = r.get('ENQUEUER_MAX_HEADER_BYTES')
  // The request line counts toward the header limit, so a longer target could never arrive: a
  // conflict when both are set; a default URL limit just follows a lowered header limit.
  let maxUrlBytes = r.get('ENQUEUER_MAX_URL_BYTES')
  if (maxUrlBytes > maxHeaderBytes) {
    if (r.given('ENQUEUER_MAX_URL_BYTES')) r.problem('ENQUEUER_MAX_URL_BYTES', `must be at most ENQUEUER_MAX_HEADER_BYTES (${maxHeaderBytes}): the request line counts toward it`)
    maxUrlBytes = maxHeaderBytes
  }
  const headersTimeoutMs = r.get('ENQUEUER_HEADERS_TIMEOUT_MS')
  const requestTimeoutMs = r.get('ENQUEUER_BODY_TIMEOUT_MS')
  if (requestTimeoutMs < headersTimeoutMs) {
    r.problem('ENQUEUER_BODY_TIMEOUT_MS', `must be at least ENQUEUER_HEADERS_TIMEOUT_MS (${headersTimeoutMs})`)
  }
  const adminPort = r.get('ADMIN_PORT')
  const maxInflight = r.get('ENQUEUER_MAX_INFLIGHT')
  const perService = r.get('ENQUEUER_MAX_INFLIGHT_PER_SERVICE')
  if (perService > maxInflight) r.problem('ENQUEUER_MAX_INFLIGHT_PER_SERVICE', `must be at most ENQUEUER_MAX_INFLIGHT (${maxInflight})`)
  // Envoy's per-cluster limits are the model; half leaves the other services room when one goes silent.
  const defaultShare = services !== undefined && services.length === 1 ? maxInflight : Math.ceil(maxInflight / 2)
  return {
    port: r.get('ENQUEUER_PORT'),
    host: r.get('ENQUEUER_HOST'),
    replyTimeoutMs,
    maxBodyBytes: r.get('ENQUEUER_MAX_BODY_BYTES'),
    services: services === undefined || services.length === 0 ? null : new Set(services),
    channels: r.get('ENQUEUER_POOL_SIZE'),
    publishTimeoutMs: r.get('ENQUEUER_PUBLISH_TIMEOUT_MS'),
    persistent: r.get('ENQUEUER_PERSISTENT'),
    maxInflight,
    maxInflightPerService: perService === 0 ? defaultShare : perService,
    maxConnections: r.get('ENQUEUER_MAX_CONNECTIONS'),
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: r.get('ENQUEUER_KEEPALIVE_TIMEOUT_MS'),
    sendTimeoutMs: r.get('ENQUEUER_SEND_TIMEOUT_MS'),
    maxBufferedBytes: r.get('ENQUEUER_MAX_BUFFERED_BYTES'),
    streamIdleTimeoutMs: r.get('ENQUEUER_STREAM_IDLE_TIMEOUT_MS'),
    maxHeaderBytes,
    maxHeaders: r.get('ENQUEUER_MAX_HEADERS'),
    maxUrlBytes,
    queueCheckTtlMs: r.get('ENQUEUER_QUEUE_CHECK_TTL_MS'),
    newServiceChecksPerSecond: r.get('ENQUEUER_NEW_SERVICE_CHECKS_PER_SECOND'),
    breaker: {
      enabled: r.get('ENQUEUER_BREAKER_ENABLED'),
      threshold: r.get('ENQUEUER_BREAKER_THRESHOLD'),
      cooldownMs: r.get('ENQUEUER_BREAKER_COOLDOWN_MS'),
    },
    authTokensFile: r.get('ENQUEUER_AUTH_TOKENS_FILE') ?? null,
    trustedProxies: r.get('ENQUEUER_TRUSTED_PROXIES') ?? null,
    drainDelayMs: Math.round(r.get('ENQUEUER_DRAIN_DELAY_SECONDS') * 1000),
    workers: r.get('ENQUEUER_WORKERS'),
    admin: adminPort === undefined ? null : { port: adminPort, host: r.get('ADMIN_HOST') },
    async: readAsync(r),
    idempotency: {
      enabled: r.get('ENQUEUER_IDEMPOTENCY'),
      ttlSeconds: r.get('ENQUEUER_IDEMPOTENCY_TTL'),
      maxBodyBytes: r.get('ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES'),
      graceMs: r.get('ENQUEUER_IDEMPOTENCY_GRACE_SECONDS') * 1000,
      redisUrl: readRedisUrl(r),
    },
    coldStart: {
      noConsumers: r.get('ENQUEUER_NO_CONSUMERS'),
      maxWaiting: r.get('ENQUEUER_MAX_WAITING'),
      scalerPort: r.get('KEDA_SCALER_PORT') ?? null,
    },
  }
}

function readAsync (r: Reader): EnqueuerConfig['async'] {
  const authHeader = r.get('ASYNC_AUTH_HEADER').toLowerCase()
  if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(authHeader)) r.problem('ASYNC_AUTH_HEADER', 'is not a valid header name')
  const always = r.get('ASYNC_MODE')
  const maxResultBytes = r.get('ASYNC_MAX_RESULT_BYTES')
  const maxStoredBytes = r.get('ASYNC_MAX_STORED_BYTES')
  if (maxStoredBytes < maxResultBytes) r.problem('ASYNC_MAX_STORED_BYTES', `must be at least ASYNC_MAX_RESULT_BYTES (${maxResultBytes})`)
  return {
    enabled: always || r.get('ASYNC_JOBS'),
    always,
    jobTtlSeconds: r.get('ASYNC_JOB_TTL'),
    authHeader,
    requireAuth: r.get('ASYNC_REQUIRE_AUTH'),
    resultsQueue: r.get('ASYNC_RESULTS_QUEUE'),
    resultsQueueType: r.get('ASYNC_RESULTS_QUEUE_TYPE'),
    maxJobs: r.get('ASYNC_MAX_JOBS'),
    maxResultBytes,
    maxStoredBytes,
    callbackAllowedHosts: (r.get('ASYNC_CALLBACK_ALLOWED_HOSTS') ?? []).map((h) => h.toLowerCase()),
    redisUrl: readRedisUrl(r),
  }
}

function readRedisUrl (r: Reader): string | null {
  const url = r.get('REDIS_URL')
  if (url !== undefined) {
    if (!/^rediss?:\/\//.test(url)) r.problem('REDIS_URL', 'must start with redis:// or rediss://')
    return url
  }
  const host = r.get('REDIS_HOST')
  if (host === undefined) return null
  const pass = r.get('REDIS_PASSWORD')
  const auth = pass === undefined ? '' : `:${encodeURIComponent(pass)}@`
  return `redis://${auth}${host}:${r.get('REDIS_PORT')}/${r.get('REDIS_DB')}`
}

function readDequeuer (r: Reader): DequeuerConfig {
  const service = r.need('SERVICE_NAME', 'in dequeuer mode')
  const downstreamUrl = r.need('DOWNSTREAM_URL', 'in dequeuer mode')
  const concurrency = r.get('DEQUEUER_CONCURRENCY')
  const maxAttempts = r.get('DEQUEUER_MAX_ATTEMPTS')
  const deliveryLimit = r.get('DEQUEUER_DELIVERY_LIMIT')
  if (deliveryLimit <= maxAttempts) {
    r.problem('DEQUEUER_DELIVERY_LIMIT', `must exceed DEQUEUER_MAX_ATTEMPTS (${maxAttempts}) so relayq, not the broker, decides when to dead-letter`)
  }
  const retryDelayMs = r.get('DEQUEUER_RETRY_DELAY_MS')
  const retryMaxDelayMs = r.get('DEQUEUER_RETRY_MAX_DELAY_MS')
  if (retryMaxDelayMs < retryDelayMs) r.problem('DEQUEUER_RETRY_MAX_DELAY_MS', `must be at least DEQUEUER_RETRY_DELAY_MS (${retryDelayMs})`)
  const batchEnabled = r.get('BATCH_MODE')
  const batchUrl = batchEnabled ? r.need('BATCH_DOWNSTREAM_URL', 'when BATCH_MODE=true') : r.get('BATCH_DOWNSTREAM_URL')
  const idemUrl = r.get('DEQUEUER_IDEMPOTENCY_REDIS_URL')
  if (idemUrl !== undefined && !/^rediss?:\/\//.test(idemUrl)) r.problem('DEQUEUER_IDEMPOTENCY_REDIS_URL', 'must start with redis:// or rediss://')
  return {
    service: service ?? '',
    idempotency: idemUrl === undefined ? null : { redisUrl: idemUrl, ttlSeconds: r.get('DEQUEUER_IDEMPOTENCY_TTL') },
    downstreamUrl: downstreamUrl ?? new URL('http://invalid'),
    downstreamTimeoutMs: Math.round(r.get('DOWNSTREAM_TIMEOUT') * 1000),
    concurrency,
    connections: r.get('DEQUEUER_POOL_SIZE') ?? concurrency,
    admin: { port: r.get('METRICS_PORT'), host: r.get('METRICS_HOST') },
    queueType: r.get('DEQUEUER_QUEUE_TYPE'),
    declareQueues: r.get('DEQUEUER_DECLARE_QUEUES'),
    maxAttempts,
    retryDelayMs,
    retryMaxDelayMs,
    retryStatuses: new Set(r.get('DEQUEUER_RETRY_STATUSES')),
    expired: r.get('DEQUEUER_EXPIRED'),
    deliveryLimit,
    maxReplyBytes: r.get('DEQUEUER_MAX_REPLY_BYTES'),
    streamThresholdBytes: r.get('DEQUEUER_STREAM_THRESHOLD_BYTES'),
    maxMessageBytes: r.get('DEQUEUER_MAX_MESSAGE_BYTES'),
    messageKey: r.get('RELAYQ_MESSAGE_KEY') ?? null,
    messageTtlMs: r.get('MESSAGE_TTL_MS'),
    maxLength: r.get('DEQUEUER_MAX_LENGTH'),
    dlqPollIntervalMs: r.get('DLQ_POLL_INTERVAL_MS'),
    consumerRecoveryLimitMs: r.get('DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS'),
    breaker: {
      enabled: r.get('CIRCUIT_BREAKER_ENABLED'),
      errorPercent: r.get('CIRCUIT_BREAKER_ERROR_PERCENT'),
      volume: r.get('CIRCUIT_BREAKER_VOLUME'),
      windowMs: r.get('CIRCUIT_BREAKER_WINDOW_MS'),
      resetMs: r.get('CIRCUIT_BREAKER_RESET_MS'),
      failureStatuses: new Set(r.get('CIRCUIT_BREAKER_FAILURE_STATUSES')),
    },
    health: {
      url: r.get('HEALTH_CHECK_URL') ?? null,
      intervalMs: Math.round(r.get('HEALTH_CHECK_INTERVAL') * 1000),
      timeoutMs: Math.round(r.get('HEALTH_CHECK_TIMEOUT') * 1000),
      maxRetries: r.get('HEALTH_CHECK_MAX_RETRIES'),
    },
    batch: {
      enabled: batchEnabled,
      url: batchUrl ?? null,
      size: r.get('BATCH_SIZE') ?? null,
      windowMs: r.get('BATCH_WINDOW_MS'),
      timeoutMs: r.get('BATCH_TIMEOUT_MS'),
    },
  }
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !(value instanceof URL) && !(value instanceof Set)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
