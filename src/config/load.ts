// loadConfig(env) parses every variable the chosen mode reads, collects every
// problem, and throws them together: one start-up tells the operator all that
// is wrong, each line naming its variable.
import { readFileSync } from 'node:fs'
import { SPEC, type SpecName, type SpecValue, type VarSpec } from './spec'
import type { BrokerConfig, Config, DequeuerConfig, DlqToolConfig, EnqueuerConfig, Mode, TlsConfig } from './types'

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
class Reader {
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
    return direct === '' ? undefined : direct
  }

  get<K extends SpecName>(name: K): SpecValue<K> | undefined {
    const spec = SPEC[name] as VarSpec<SpecValue<K>>
    const raw = this.raw(spec) ?? spec.default
    if (raw === undefined) return undefined
    try {
      return spec.parse(raw)
    } catch (err) {
      // A secret's parse error must not echo the secret back into the logs.
      this.problem(spec.name, spec.secret === true ? 'invalid value' : (err as Error).message)
      return undefined
    }
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
    logLevel: r.get('LOG_LEVEL') ?? 'info',
    metricsEnabled: r.get('METRICS_ENABLED') ?? true,
    shutdownTimeoutMs: Math.round((r.get('SHUTDOWN_TIMEOUT_SECONDS') ?? 30) * 1000),
    broker,
    enqueuer: mode === 'enqueuer' ? readEnqueuer(r) : null,
    dequeuer: mode === 'dequeuer' ? readDequeuer(r) : null,
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems)
  return deepFreeze(config)
}

/** The dlq tool needs no mode: just the broker and the service's queue type. */
export function loadDlqToolConfig (env: Env, readFile: ReadFile = defaultReadFile): DlqToolConfig {
  const r = new Reader(env, readFile)
  const config: DlqToolConfig = {
    logLevel: r.get('LOG_LEVEL') ?? 'info',
    broker: readBroker(r),
    queueType: r.get('DEQUEUER_QUEUE_TYPE') ?? 'classic',
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems)
  return deepFreeze(config)
}

function readBroker (r: Reader): BrokerConfig {
  const initial = r.get('RABBITMQ_RECONNECT_INITIAL_MS') ?? 100
  const max = r.get('RABBITMQ_RECONNECT_MAX_MS') ?? 5000
  if (max < initial) r.problem('RABBITMQ_RECONNECT_MAX_MS', `must be at least RABBITMQ_RECONNECT_INITIAL_MS (${initial})`)
  return {
    urls: readBrokerUrls(r),
    heartbeatSeconds: r.get('RABBITMQ_HEARTBEAT_SECONDS') ?? 10,
    connectTimeoutMs: r.get('RABBITMQ_CONNECT_TIMEOUT_MS') ?? 5000,
    reconnectInitialMs: initial,
    reconnectMaxMs: max,
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
  const tls = r.get('RABBITMQ_TLS') ?? false
  const host = r.get('RABBITMQ_HOST') ?? 'localhost'
  const port = r.get('RABBITMQ_PORT') ?? 5672
  const user = encodeURIComponent(r.get('RABBITMQ_USER') ?? 'guest')
  const pass = encodeURIComponent(r.get('RABBITMQ_PASSWORD') ?? 'guest')
  const vhost = encodeURIComponent(r.get('RABBITMQ_VHOST') ?? '/')
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
  const tls: { -readonly [K in keyof TlsConfig]: TlsConfig[K] } = { insecure: r.get('RABBITMQ_TLS_INSECURE') ?? false }
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
  const replyTimeoutMs = Math.round((r.get('ENQUEUER_REPLY_TIMEOUT') ?? 120) * 1000)
  const services = r.get('ENQUEUER_SERVICES')
  const maxHeaderBytes = r.get('ENQUEUER_MAX_HEADER_BYTES') ?? 16384
  const maxUrlBytes = r.get('ENQUEUER_MAX_URL_BYTES') ?? 8192
  const headersTimeoutMs = r.get('ENQUEUER_HEADERS_TIMEOUT_MS') ?? 10000
  const requestTimeoutMs = r.get('ENQUEUER_BODY_TIMEOUT_MS') ?? 30000
  if (requestTimeoutMs < headersTimeoutMs) {
    r.problem('ENQUEUER_BODY_TIMEOUT_MS', `must be at least ENQUEUER_HEADERS_TIMEOUT_MS (${headersTimeoutMs})`)
  }
  const adminPort = r.get('ADMIN_PORT')
  return {
    port: r.get('ENQUEUER_PORT') ?? 8000,
    host: r.get('ENQUEUER_HOST') ?? '0.0.0.0',
    replyTimeoutMs,
    maxBodyBytes: r.get('ENQUEUER_MAX_BODY_BYTES') ?? 10 * 1024 * 1024,
    services: services === undefined || services.length === 0 ? null : new Set(services),
    channels: r.get('ENQUEUER_POOL_SIZE') ?? 2,
    publishTimeoutMs: r.get('ENQUEUER_PUBLISH_TIMEOUT_MS') ?? 5000,
    persistent: r.get('ENQUEUER_PERSISTENT') ?? false,
    maxInflight: r.get('ENQUEUER_MAX_INFLIGHT') ?? 10000,
    maxConnections: r.get('ENQUEUER_MAX_CONNECTIONS') ?? 10000,
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: r.get('ENQUEUER_KEEPALIVE_TIMEOUT_MS') ?? 5000,
    sendTimeoutMs: r.get('ENQUEUER_SEND_TIMEOUT_MS') ?? 60000,
    maxBufferedBytes: r.get('ENQUEUER_MAX_BUFFERED_BYTES') ?? 256 * 1024 * 1024,
    maxHeaderBytes,
    maxHeaders: r.get('ENQUEUER_MAX_HEADERS') ?? 100,
    maxUrlBytes: Math.min(maxUrlBytes, maxHeaderBytes),
    queueCheckTtlMs: r.get('ENQUEUER_QUEUE_CHECK_TTL_MS') ?? 2000,
    breaker: {
      enabled: r.get('ENQUEUER_BREAKER_ENABLED') ?? true,
      threshold: r.get('ENQUEUER_BREAKER_THRESHOLD') ?? 5,
      cooldownMs: r.get('ENQUEUER_BREAKER_COOLDOWN_MS') ?? 5000,
    },
    authTokensFile: r.get('ENQUEUER_AUTH_TOKENS_FILE') ?? null,
    drainDelayMs: Math.round((r.get('ENQUEUER_DRAIN_DELAY_SECONDS') ?? 0) * 1000),
    workers: r.get('ENQUEUER_WORKERS') ?? 1,
    admin: adminPort === undefined ? null : { port: adminPort, host: r.get('ADMIN_HOST') ?? '0.0.0.0' },
    async: readAsync(r),
  }
}

function readAsync (r: Reader): EnqueuerConfig['async'] {
  const authHeader = (r.get('ASYNC_AUTH_HEADER') ?? 'Authorization').toLowerCase()
  if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(authHeader)) r.problem('ASYNC_AUTH_HEADER', 'is not a valid header name')
  const always = r.get('ASYNC_MODE') ?? false
  return {
    enabled: always || (r.get('ASYNC_JOBS') ?? true),
    always,
    jobTtlSeconds: r.get('ASYNC_JOB_TTL') ?? 3600,
    authHeader,
    requireAuth: r.get('ASYNC_REQUIRE_AUTH') ?? false,
    resultsQueue: r.get('ASYNC_RESULTS_QUEUE') ?? 'relayq_results',
    maxJobs: r.get('ASYNC_MAX_JOBS') ?? 100000,
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
  return `redis://${auth}${host}:${r.get('REDIS_PORT') ?? 6379}/${r.get('REDIS_DB') ?? 0}`
}

function readDequeuer (r: Reader): DequeuerConfig {
  const service = r.need('SERVICE_NAME', 'in dequeuer mode')
  const downstreamUrl = r.need('DOWNSTREAM_URL', 'in dequeuer mode')
  const concurrency = r.get('DEQUEUER_CONCURRENCY') ?? 100
  const maxAttempts = r.get('DEQUEUER_MAX_ATTEMPTS') ?? 3
  const deliveryLimit = r.get('DEQUEUER_DELIVERY_LIMIT') ?? 20
  if (deliveryLimit <= maxAttempts) {
    r.problem('DEQUEUER_DELIVERY_LIMIT', `must exceed DEQUEUER_MAX_ATTEMPTS (${maxAttempts}) so relayq, not the broker, decides when to dead-letter`)
  }
  const retryDelayMs = r.get('DEQUEUER_RETRY_DELAY_MS') ?? 1000
  const retryMaxDelayMs = r.get('DEQUEUER_RETRY_MAX_DELAY_MS') ?? 30000
  if (retryMaxDelayMs < retryDelayMs) r.problem('DEQUEUER_RETRY_MAX_DELAY_MS', `must be at least DEQUEUER_RETRY_DELAY_MS (${retryDelayMs})`)
  const batchEnabled = r.get('BATCH_MODE') ?? false
  const batchUrl = batchEnabled ? r.need('BATCH_DOWNSTREAM_URL', 'when BATCH_MODE=true') : (r.get('BATCH_DOWNSTREAM_URL') ?? undefined)
  return {
    service: service ?? '',
    downstreamUrl: downstreamUrl ?? new URL('http://invalid'),
    downstreamTimeoutMs: Math.round((r.get('DOWNSTREAM_TIMEOUT') ?? 60) * 1000),
    concurrency,
    connections: r.get('DEQUEUER_POOL_SIZE') ?? concurrency,
    admin: { port: r.get('METRICS_PORT') ?? 8001, host: r.get('METRICS_HOST') ?? '0.0.0.0' },
    queueType: r.get('DEQUEUER_QUEUE_TYPE') ?? 'classic',
    declareQueues: r.get('DEQUEUER_DECLARE_QUEUES') ?? true,
    maxAttempts,
    retryDelayMs,
    retryMaxDelayMs,
    retryStatuses: new Set(r.get('DEQUEUER_RETRY_STATUSES') ?? []),
    expired: r.get('DEQUEUER_EXPIRED') ?? 'dead-letter',
    deliveryLimit,
    maxReplyBytes: r.get('DEQUEUER_MAX_REPLY_BYTES') ?? 15 * 1024 * 1024,
    maxMessageBytes: r.get('DEQUEUER_MAX_MESSAGE_BYTES') ?? 16 * 1024 * 1024,
    messageTtlMs: r.get('MESSAGE_TTL_MS') ?? 0,
    dlqPollIntervalMs: r.get('DLQ_POLL_INTERVAL_MS') ?? 10000,
    breaker: {
      enabled: r.get('CIRCUIT_BREAKER_ENABLED') ?? true,
      errorPercent: r.get('CIRCUIT_BREAKER_ERROR_PERCENT') ?? 50,
      volume: r.get('CIRCUIT_BREAKER_VOLUME') ?? 10,
      windowMs: r.get('CIRCUIT_BREAKER_WINDOW_MS') ?? 10000,
      resetMs: r.get('CIRCUIT_BREAKER_RESET_MS') ?? 5000,
      failureStatuses: new Set(r.get('CIRCUIT_BREAKER_FAILURE_STATUSES') ?? [502, 503, 504]),
    },
    health: {
      url: r.get('HEALTH_CHECK_URL') ?? null,
      intervalMs: Math.round((r.get('HEALTH_CHECK_INTERVAL') ?? 5) * 1000),
      timeoutMs: Math.round((r.get('HEALTH_CHECK_TIMEOUT') ?? 10) * 1000),
      maxRetries: r.get('HEALTH_CHECK_MAX_RETRIES') ?? 0,
    },
    batch: {
      enabled: batchEnabled,
      url: batchUrl ?? null,
      size: r.get('BATCH_SIZE') ?? null,
      windowMs: r.get('BATCH_WINDOW_MS') ?? 20,
      timeoutMs: r.get('BATCH_TIMEOUT_MS') ?? 30000,
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

/** The effective configuration for the start-up log line, secrets redacted. */
export function describeConfig (env: Env, mode: Mode | 'dlq'): Record<string, string> {
  const out: Record<string, string> = {}
  for (const spec of Object.values(SPEC) as VarSpec[]) {
    if (spec.scope !== 'all' && spec.scope !== mode) continue
    const set = env[spec.name] ?? (spec.file === true && env[`${spec.name}_FILE`] !== undefined ? '(from file)' : undefined)
    const value = set ?? spec.default
    if (value === undefined) continue
    out[spec.name] = spec.secret === true && set !== undefined ? '[redacted]' : value
  }
  return out
}
