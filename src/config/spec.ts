// Every environment variable relayq reads, in one table: name, parser,
// default, unit and meaning. The loader, docs/configuration.md's table and
// the deploy manifests' checks all come from this list.
import * as p from './parsers'

export type Scope = 'all' | 'enqueuer' | 'dequeuer' | 'dlq'

export interface VarSpec<T = unknown> {
  readonly name: string
  readonly parse: p.Parser<T>
  /** Raw default, parsed like user input. Undefined means "unset". */
  readonly default?: string
  readonly scope: Scope
  readonly doc: string
  /** Secrets are redacted in the config dump and may come from NAME_FILE. */
  readonly secret?: boolean
  /** Variables that may also be given as NAME_FILE (the container convention). */
  readonly file?: boolean
  readonly group: string
}

// `const` keeps each entry's own shape, so the loader's type knows which
// variables have a default (and reads them as never undefined).
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each entry keeps its own parser type
function v<const S extends VarSpec<any>> (spec: S): S {
  return spec
}

const MiB = 1024 * 1024

export const SPEC = {
  // ---- process ----
  RELAYQ_MODE: v({ name: 'RELAYQ_MODE', parse: p.oneOf('enqueuer', 'dequeuer'), scope: 'all', group: 'process', doc: 'Which side to run: `enqueuer` (HTTP edge) or `dequeuer` (sidecar). Required.' }),
  LOG_LEVEL: v({ name: 'LOG_LEVEL', parse: p.oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), default: 'info', scope: 'all', group: 'process', doc: 'Log level of the JSON lines written to stdout.' }),
  METRICS_ENABLED: v({ name: 'METRICS_ENABLED', parse: p.bool, default: 'true', scope: 'all', group: 'process', doc: 'Record Prometheus metrics. `false` turns every metric into a no-op (used by the overhead benchmark).' }),
  SHUTDOWN_TIMEOUT_SECONDS: v({ name: 'SHUTDOWN_TIMEOUT_SECONDS', parse: p.num(0, 3600), default: '30', scope: 'all', group: 'process', doc: 'Seconds a drain (SIGTERM, SIGINT, `POST /drain`) waits for in-flight work before giving up on it.' }),

  // ---- broker ----
  RABBITMQ_URL: v({ name: 'RABBITMQ_URL', parse: p.str, scope: 'all', group: 'broker', secret: true, file: true, doc: 'amqp:// or amqps:// URL with user, password and vhost. Several, comma-separated, for a cluster: each connection starts at a random one and moves to the next on failure. Wins over the RABBITMQ_HOST family.' }),
  RABBITMQ_HOST: v({ name: 'RABBITMQ_HOST', parse: p.hostname, default: 'localhost', scope: 'all', group: 'broker', doc: 'Broker host, used when RABBITMQ_URL is unset.' }),
  RABBITMQ_PORT: v({ name: 'RABBITMQ_PORT', parse: p.int(1, 65535), default: '5672', scope: 'all', group: 'broker', doc: 'Broker port.' }),
  RABBITMQ_USER: v({ name: 'RABBITMQ_USER', parse: p.str, default: 'guest', scope: 'all', group: 'broker', doc: 'Broker user.' }),
  RABBITMQ_PASSWORD: v({ name: 'RABBITMQ_PASSWORD', parse: p.str, default: 'guest', scope: 'all', group: 'broker', secret: true, file: true, doc: 'Broker password (or RABBITMQ_PASSWORD_FILE).' }),
  RABBITMQ_VHOST: v({ name: 'RABBITMQ_VHOST', parse: p.str, default: '/', scope: 'all', group: 'broker', doc: 'Broker virtual host.' }),
  RABBITMQ_TLS: v({ name: 'RABBITMQ_TLS', parse: p.bool, default: 'false', scope: 'all', group: 'broker', doc: 'Use amqps with the RABBITMQ_HOST family (RABBITMQ_URL says it with its scheme).' }),
  RABBITMQ_MAX_MESSAGE_BYTES: v({ name: 'RABBITMQ_MAX_MESSAGE_BYTES', parse: p.int(0, 512 * 1024 * 1024), default: '0', scope: 'enqueuer', group: 'broker', doc: 'The broker\'s max_message_size. 0: the default of the broker\'s version, read at connect (128 MiB on 3.x, 16 MiB on 4.x). ENQUEUER_MAX_BODY_BYTES plus ENQUEUER_MAX_HEADER_BYTES must fit under it, or start-up stops.' }),
  RABBITMQ_HEARTBEAT_SECONDS: v({ name: 'RABBITMQ_HEARTBEAT_SECONDS', parse: p.int(0, 600), default: '10', scope: 'all', group: 'broker', doc: 'AMQP heartbeat; a silent peer is declared dead after two missed intervals. 0 disables heartbeats (not advised).' }),
  RABBITMQ_CONNECT_TIMEOUT_MS: v({ name: 'RABBITMQ_CONNECT_TIMEOUT_MS', parse: p.int(100, 600000), default: '5000', scope: 'all', group: 'broker', doc: 'TCP + TLS + AMQP handshake timeout per connection attempt.' }),
  RABBITMQ_RECONNECT_INITIAL_MS: v({ name: 'RABBITMQ_RECONNECT_INITIAL_MS', parse: p.int(1, 600000), default: '100', scope: 'all', group: 'broker', doc: 'First reconnect delay; doubles per failed attempt, with full jitter.' }),
  RABBITMQ_RECONNECT_MAX_MS: v({ name: 'RABBITMQ_RECONNECT_MAX_MS', parse: p.int(1, 600000), default: '5000', scope: 'all', group: 'broker', doc: 'Cap of the reconnect delay.' }),
  RABBITMQ_CA_FILE: v({ name: 'RABBITMQ_CA_FILE', parse: p.str, scope: 'all', group: 'broker', doc: 'PEM file of CA certificates trusted for amqps (default: the system CAs).' }),
  RABBITMQ_CERT_FILE: v({ name: 'RABBITMQ_CERT_FILE', parse: p.str, scope: 'all', group: 'broker', doc: 'PEM client certificate for mutual TLS.' }),
  RABBITMQ_KEY_FILE: v({ name: 'RABBITMQ_KEY_FILE', parse: p.str, scope: 'all', group: 'broker', doc: 'PEM client key for mutual TLS.' }),
  RABBITMQ_KEY_PASSPHRASE: v({ name: 'RABBITMQ_KEY_PASSPHRASE', parse: p.str, scope: 'all', group: 'broker', secret: true, file: true, doc: 'Passphrase of RABBITMQ_KEY_FILE.' }),
  RABBITMQ_TLS_SERVERNAME: v({ name: 'RABBITMQ_TLS_SERVERNAME', parse: p.hostname, scope: 'all', group: 'broker', doc: 'Name checked against the broker certificate (default: the URL host).' }),
  RABBITMQ_TLS_INSECURE: v({ name: 'RABBITMQ_TLS_INSECURE', parse: p.bool, default: 'false', scope: 'all', group: 'broker', doc: 'Skip broker certificate verification. For experiments only; logged as a warning at start-up.' }),

  // ---- enqueuer: HTTP edge ----
  ENQUEUER_PORT: v({ name: 'ENQUEUER_PORT', parse: p.port, default: '8000', scope: 'enqueuer', group: 'enqueuer', doc: 'HTTP port of the enqueuer.' }),
  ENQUEUER_HOST: v({ name: 'ENQUEUER_HOST', parse: p.hostname, default: '0.0.0.0', scope: 'enqueuer', group: 'enqueuer', doc: 'Address the enqueuer listens on.' }),
  ENQUEUER_REPLY_TIMEOUT: v({ name: 'ENQUEUER_REPLY_TIMEOUT', parse: p.num(0.001, 86400), default: '120', scope: 'enqueuer', group: 'enqueuer', doc: 'Seconds to wait for a reply (504 after). Also the maximum a caller may ask with `x-relayq-timeout-ms`, and the message expiration.' }),
  ENQUEUER_MAX_BODY_BYTES: v({ name: 'ENQUEUER_MAX_BODY_BYTES', parse: p.int(0, 512 * MiB), default: String(10 * MiB), scope: 'enqueuer', group: 'enqueuer', doc: 'Largest request body; larger gets 413 before anything is published.' }),
  ENQUEUER_SERVICES: v({ name: 'ENQUEUER_SERVICES', parse: p.list(p.serviceName), scope: 'enqueuer', group: 'enqueuer', doc: 'Comma-separated allow-list of service names. Unset: any valid name whose queue exists. Others get 404 and nothing is published.' }),
  ENQUEUER_POOL_SIZE: v({ name: 'ENQUEUER_POOL_SIZE', parse: p.int(1, 64), default: '2', scope: 'enqueuer', group: 'enqueuer', doc: 'ProxyMQ name. Publishing channels per process, each with its own direct reply-to consumer and pending-reply table (spreads large bodies so small requests do not wait behind them).' }),
  ENQUEUER_PUBLISH_TIMEOUT_MS: v({ name: 'ENQUEUER_PUBLISH_TIMEOUT_MS', parse: p.int(1, 600000), default: '5000', scope: 'enqueuer', group: 'enqueuer', doc: 'Time for the broker to confirm a publish; 503 after.' }),
  ENQUEUER_PERSISTENT: v({ name: 'ENQUEUER_PERSISTENT', parse: p.bool, default: 'false', scope: 'enqueuer', group: 'enqueuer', doc: 'Publish request/reply messages as persistent (delivery mode 2). Async jobs are always persistent.' }),
  ENQUEUER_MAX_INFLIGHT: v({ name: 'ENQUEUER_MAX_INFLIGHT', parse: p.int(1, 1000000), default: '10000', scope: 'enqueuer', group: 'enqueuer', doc: 'Concurrent requests per process; beyond it 503 with Retry-After, so a flood cannot exhaust memory.' }),
  ENQUEUER_MAX_INFLIGHT_PER_SERVICE: v({ name: 'ENQUEUER_MAX_INFLIGHT_PER_SERVICE', parse: p.int(0, 1000000), default: '0', scope: 'enqueuer', group: 'enqueuer', doc: 'Requests in flight one service may hold, so a silent service cannot take every slot from the others (503 RQ_ERR_SERVICE_OVERLOADED for that service only). 0: half of ENQUEUER_MAX_INFLIGHT, or all of it when ENQUEUER_SERVICES names one service. At most ENQUEUER_MAX_INFLIGHT.' }),
  ENQUEUER_MAX_CONNECTIONS: v({ name: 'ENQUEUER_MAX_CONNECTIONS', parse: p.int(1, 1000000), default: '10000', scope: 'enqueuer', group: 'enqueuer', doc: 'Open client connections per process; beyond it new connections are closed at once.' }),
  ENQUEUER_HEADERS_TIMEOUT_MS: v({ name: 'ENQUEUER_HEADERS_TIMEOUT_MS', parse: p.int(100, 600000), default: '10000', scope: 'enqueuer', group: 'enqueuer', doc: 'Time a client has to send the request headers (408 after).' }),
  ENQUEUER_BODY_TIMEOUT_MS: v({ name: 'ENQUEUER_BODY_TIMEOUT_MS', parse: p.int(100, 3600000), default: '30000', scope: 'enqueuer', group: 'enqueuer', doc: 'Time a client has to send the whole request, headers and body (408 after).' }),
  ENQUEUER_SEND_TIMEOUT_MS: v({ name: 'ENQUEUER_SEND_TIMEOUT_MS', parse: p.int(100, 3600000), default: '60000', scope: 'enqueuer', group: 'enqueuer', doc: 'Time an answer (a reply or a job result) may go without the client reading any of it; the connection is closed after (nginx\'s send_timeout).' }),
  ENQUEUER_STREAM_IDLE_TIMEOUT_MS: v({ name: 'ENQUEUER_STREAM_IDLE_TIMEOUT_MS', parse: p.int(0, 3600000), default: '30000', scope: 'enqueuer', group: 'enqueuer', doc: 'Longest gap between two messages of a streamed response; the client\'s response is cut after (docs/streaming.md). 0: this enqueuer takes no streams (every answer buffered).' }),
  ENQUEUER_MAX_BUFFERED_BYTES: v({ name: 'ENQUEUER_MAX_BUFFERED_BYTES', parse: p.int(0, 64 * 1024 * MiB), default: String(256 * MiB), scope: 'enqueuer', group: 'enqueuer', doc: 'Bytes of answers being written to clients that have not read them yet, per process; beyond it new requests (and reads of job results) get 503 `RQ_ERR_SEND_BUFFER_FULL`. 0: no limit.' }),
  ENQUEUER_KEEPALIVE_TIMEOUT_MS: v({ name: 'ENQUEUER_KEEPALIVE_TIMEOUT_MS', parse: p.int(0, 600000), default: '5000', scope: 'enqueuer', group: 'enqueuer', doc: 'Idle time before a keep-alive connection is closed. 0 closes after each response.' }),
  ENQUEUER_MAX_HEADER_BYTES: v({ name: 'ENQUEUER_MAX_HEADER_BYTES', parse: p.int(1024, 1024 * 1024), default: '16384', scope: 'enqueuer', group: 'enqueuer', doc: 'Total size of the request line and headers (431 beyond).' }),
  ENQUEUER_MAX_HEADERS: v({ name: 'ENQUEUER_MAX_HEADERS', parse: p.int(1, 10000), default: '100', scope: 'enqueuer', group: 'enqueuer', doc: 'Number of request headers (431 beyond).' }),
  ENQUEUER_MAX_URL_BYTES: v({ name: 'ENQUEUER_MAX_URL_BYTES', parse: p.int(16, 1024 * 1024), default: '8192', scope: 'enqueuer', group: 'enqueuer', doc: 'Length of the request target (414 beyond). At most ENQUEUER_MAX_HEADER_BYTES (the request line counts toward it); unset, it follows a lower header limit.' }),
  ENQUEUER_QUEUE_CHECK_TTL_MS: v({ name: 'ENQUEUER_QUEUE_CHECK_TTL_MS', parse: p.int(0, 600000), default: '2000', scope: 'enqueuer', group: 'enqueuer', doc: 'How long a queue\'s existence and consumer count may be used to admit a request; refreshed in the background past half of it, so steady traffic does not wait; an older answer is never used (the request waits for a fresh check).' }),
  ENQUEUER_NEW_SERVICE_CHECKS_PER_SECOND: v({ name: 'ENQUEUER_NEW_SERVICE_CHECKS_PER_SECOND', parse: p.int(0, 1000000), default: '100', scope: 'enqueuer', group: 'enqueuer', doc: 'Broker checks per second of service names not known to have a queue (beyond it 503 RQ_ERR_OVERLOADED), so random names cannot flood the broker; names already known are never limited. 0: no limit. Set ENQUEUER_SERVICES in production instead where you can.' }),
  ENQUEUER_BREAKER_ENABLED: v({ name: 'ENQUEUER_BREAKER_ENABLED', parse: p.bool, default: 'true', scope: 'enqueuer', group: 'enqueuer', doc: 'Per-service breaker: after repeated reply timeouts, fail fast with 503 for a cool-down (a queue without a consumer is answered 503 RQ_ERR_NO_CONSUMERS and does not count).' }),
  ENQUEUER_BREAKER_THRESHOLD: v({ name: 'ENQUEUER_BREAKER_THRESHOLD', parse: p.int(1, 100000), default: '5', scope: 'enqueuer', group: 'enqueuer', doc: 'Consecutive reply timeouts that open a service\'s breaker.' }),
  ENQUEUER_BREAKER_COOLDOWN_MS: v({ name: 'ENQUEUER_BREAKER_COOLDOWN_MS', parse: p.int(1, 3600000), default: '5000', scope: 'enqueuer', group: 'enqueuer', doc: 'How long an open service breaker fails fast before letting a probe through (and how long a probe is waited on before the next one goes).' }),
  ENQUEUER_TRUSTED_PROXIES: v({ name: 'ENQUEUER_TRUSTED_PROXIES', parse: p.list(p.cidr), scope: 'enqueuer', group: 'enqueuer', doc: 'Comma-separated addresses or CIDR ranges of the front proxies whose forwarding headers are believed. The peer address is always appended to X-Forwarded-For (as nginx\'s $proxy_add_x_forwarded_for). Unset: every peer\'s X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP and Forwarded are kept. Set: those of a peer outside the list are dropped first.' }),
  ENQUEUER_AUTH_TOKENS_FILE: v({ name: 'ENQUEUER_AUTH_TOKENS_FILE', parse: p.str, scope: 'enqueuer', group: 'enqueuer', doc: 'File of accepted bearer tokens, one per line. When set, requests without `Authorization: Bearer <token>` get 401.' }),
  ENQUEUER_DRAIN_DELAY_SECONDS: v({ name: 'ENQUEUER_DRAIN_DELAY_SECONDS', parse: p.num(0, 600), default: '0', scope: 'enqueuer', group: 'enqueuer', doc: 'On a drain, seconds to keep serving after readiness turns 503, while load balancers take the endpoint out (Kubernetes: a few seconds; works on any version, unlike preStop sleep).' }),
  ENQUEUER_IDEMPOTENCY: v({ name: 'ENQUEUER_IDEMPOTENCY', parse: p.bool, default: 'false', scope: 'enqueuer', group: 'enqueuer', doc: 'Honour the `Idempotency-Key` request header (see Idempotency): a retried request runs once and gets the stored answer. `false`: the header is passed through untouched, as ProxyMQ does.' }),
  ENQUEUER_IDEMPOTENCY_TTL: v({ name: 'ENQUEUER_IDEMPOTENCY_TTL', parse: p.int(1, 30 * 86400), default: '86400', scope: 'enqueuer', group: 'enqueuer', doc: 'Seconds a completed key and its stored answer are kept.' }),
  ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES: v({ name: 'ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES', parse: p.int(0, 512 * MiB), default: String(MiB), scope: 'enqueuer', group: 'enqueuer', doc: 'Largest answer body stored for a key. A larger answer still reaches its client, and the key is kept as completed without it: a retry gets 502 `RQ_ERR_RESPONSE_TOO_LARGE` instead of running the request again.' }),
  ENQUEUER_IDEMPOTENCY_GRACE_SECONDS: v({ name: 'ENQUEUER_IDEMPOTENCY_GRACE_SECONDS', parse: p.int(0, 3600), default: '30', scope: 'enqueuer', group: 'enqueuer', doc: 'How long a keyed request may still run after its client got 504 (or hung up): its message deadline is extended by this much and the enqueuer keeps listening for the reply, which is then stored for the retry.' }),
  ENQUEUER_WORKERS: v({ name: 'ENQUEUER_WORKERS', parse: p.int(1, 64), default: '1', scope: 'enqueuer', group: 'enqueuer', doc: 'Enqueuer worker processes (node:cluster) sharing the port. Node 20 ignores container CPU limits, so this is never sized automatically.' }),
  ADMIN_PORT: v({ name: 'ADMIN_PORT', parse: p.port, scope: 'enqueuer', group: 'enqueuer', doc: 'Serve /metrics, /healthz, /readyz and /drain on this port instead of ENQUEUER_PORT. Unset: on ENQUEUER_PORT (without /drain).' }),
  ADMIN_HOST: v({ name: 'ADMIN_HOST', parse: p.hostname, default: '0.0.0.0', scope: 'enqueuer', group: 'enqueuer', doc: 'Address of the admin port.' }),

  // ---- enqueuer: async jobs ----
  ASYNC_JOBS: v({ name: 'ASYNC_JOBS', parse: p.bool, default: 'true', scope: 'enqueuer', group: 'async', doc: 'Accept jobs (`Prefer: respond-async`) and consume the results queue. `false`: no results queue, every request is request/reply (unless ASYNC_MODE).' }),
  ASYNC_MODE: v({ name: 'ASYNC_MODE', parse: p.bool, default: 'false', scope: 'enqueuer', group: 'async', doc: 'ProxyMQ\'s async enqueuer: every POST becomes a job answered 202, other methods get 405 (per request, any method: `Prefer: respond-async`).' }),
  ASYNC_JOB_TTL: v({ name: 'ASYNC_JOB_TTL', parse: p.int(1, 30 * 86400), default: '3600', scope: 'enqueuer', group: 'async', doc: 'Seconds a job and its result are kept.' }),
  ASYNC_AUTH_HEADER: v({ name: 'ASYNC_AUTH_HEADER', parse: p.str, default: 'Authorization', scope: 'enqueuer', group: 'async', doc: 'Header whose value guards a job: it must be sent again to read the job.' }),
  ASYNC_REQUIRE_AUTH: v({ name: 'ASYNC_REQUIRE_AUTH', parse: p.bool, default: 'false', scope: 'enqueuer', group: 'async', doc: 'Refuse (401) jobs created without ASYNC_AUTH_HEADER.' }),
  ASYNC_RESULTS_QUEUE: v({ name: 'ASYNC_RESULTS_QUEUE', parse: p.serviceName, default: 'relayq_results', scope: 'enqueuer', group: 'async', doc: 'Durable queue that job replies go to; consumed by every enqueuer replica and worker.' }),
  ASYNC_RESULTS_QUEUE_TYPE: v({ name: 'ASYNC_RESULTS_QUEUE_TYPE', parse: p.oneOf('classic', 'quorum'), default: 'classic', scope: 'enqueuer', group: 'async', doc: 'Type of the results queue. On a cluster use `quorum`: a classic queue lives on one node, and while that node is down jobs are refused (503) and their results wait.' }),
  ASYNC_MAX_JOBS: v({ name: 'ASYNC_MAX_JOBS', parse: p.int(1, 10000000), default: '100000', scope: 'enqueuer', group: 'async', doc: 'Bound of the in-memory job store; past it the oldest job of the caller holding the most is evicted. Not used with Redis.' }),
  ASYNC_MAX_RESULT_BYTES: v({ name: 'ASYNC_MAX_RESULT_BYTES', parse: p.int(1024, 512 * MiB), default: String(10 * MiB), scope: 'enqueuer', group: 'async', doc: 'Largest job result kept (body and headers); a larger one is stored as a failed job with `RQ_ERR_RESPONSE_TOO_LARGE`.' }),
  ASYNC_MAX_STORED_BYTES: v({ name: 'ASYNC_MAX_STORED_BYTES', parse: p.int(1024, 64 * 1024 * MiB), default: String(256 * MiB), scope: 'enqueuer', group: 'async', doc: 'Byte budget of all stored results. In memory: past it the caller holding the most loses its oldest jobs. In Redis: a result that does not fit is stored as a failed job with `RQ_ERR_JOB_STORE_FULL`.' }),
  ASYNC_CALLBACK_ALLOWED_HOSTS: v({ name: 'ASYNC_CALLBACK_ALLOWED_HOSTS', parse: p.list(p.hostname), scope: 'enqueuer', group: 'async', doc: 'Hosts that `x-relayq-callback-url` may name: `host:port`, or `host` for the scheme\'s default port. Never relayq\'s own ports or link-local addresses, whatever is listed. Unset: callbacks are refused (400).' }),
  REDIS_URL: v({ name: 'REDIS_URL', parse: p.str, scope: 'enqueuer', group: 'async', secret: true, file: true, doc: 'redis:// URL of the job store. Unset (and no REDIS_HOST): an in-memory store.' }),
  REDIS_HOST: v({ name: 'REDIS_HOST', parse: p.hostname, scope: 'enqueuer', group: 'async', doc: 'ProxyMQ name: Redis host, used when REDIS_URL is unset.' }),
  REDIS_PORT: v({ name: 'REDIS_PORT', parse: p.int(1, 65535), default: '6379', scope: 'enqueuer', group: 'async', doc: 'ProxyMQ name: Redis port.' }),
  REDIS_PASSWORD: v({ name: 'REDIS_PASSWORD', parse: p.str, scope: 'enqueuer', group: 'async', secret: true, file: true, doc: 'ProxyMQ name: Redis password.' }),
  REDIS_DB: v({ name: 'REDIS_DB', parse: p.int(0, 1000), default: '0', scope: 'enqueuer', group: 'async', doc: 'ProxyMQ name: Redis database number.' }),

  // ---- enqueuer: scale from zero ----
  ENQUEUER_NO_CONSUMERS: v({ name: 'ENQUEUER_NO_CONSUMERS', parse: p.oneOf('refuse', 'wait'), default: 'refuse', scope: 'enqueuer', group: 'scale to zero', doc: 'A request for a service whose queue exists but has no consumer: `refuse` answers 503 `RQ_ERR_NO_CONSUMERS` and publishes nothing (ProxyMQ); `wait` publishes it and waits for a pod to start, within the request\'s own deadline (see Scale to zero).' }),
  ENQUEUER_MAX_WAITING: v({ name: 'ENQUEUER_MAX_WAITING', parse: p.int(1, 1000000), default: '1000', scope: 'enqueuer', group: 'scale to zero', doc: 'With ENQUEUER_NO_CONSUMERS=wait: requests per service per process that may wait for a first consumer; beyond it 503 `RQ_ERR_TOO_MANY_WAITING` with Retry-After, nothing published.' }),
  KEDA_SCALER_PORT: v({ name: 'KEDA_SCALER_PORT', parse: p.port, scope: 'enqueuer', group: 'scale to zero', doc: 'Serve KEDA\'s external scaler gRPC protocol (`external-push` trigger) on this port, so a request waiting for a service at zero replicas wakes the autoscaler at once. Unset: off.' }),

  // ---- dequeuer ----
  SERVICE_NAME: v({ name: 'SERVICE_NAME', parse: p.serviceName, scope: 'dequeuer', group: 'dequeuer', doc: 'Service whose queue `{SERVICE_NAME}_requests` this sidecar consumes. Required for the dequeuer; the dlq tool\'s default `--service`.' }),
  DOWNSTREAM_URL: v({ name: 'DOWNSTREAM_URL', parse: p.httpUrl, scope: 'dequeuer', group: 'dequeuer', doc: 'Base URL of the service; the request\'s `{rest}` and query are appended to its path. Required for the dequeuer.' }),
  DOWNSTREAM_TIMEOUT: v({ name: 'DOWNSTREAM_TIMEOUT', parse: p.num(0.001, 86400), default: '60', scope: 'dequeuer', group: 'dequeuer', doc: 'Seconds the service has to answer (504 after), shortened to the caller\'s remaining deadline. Keep it well below the broker\'s consumer_timeout (30 min).' }),
  DEQUEUER_CONCURRENCY: v({ name: 'DEQUEUER_CONCURRENCY', parse: p.int(1, 65535), default: '100', scope: 'dequeuer', group: 'dequeuer', doc: 'Prefetch: messages in flight at once.' }),
  DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS: v({ name: 'DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS', parse: p.int(1000, 3600000), default: '60000', scope: 'dequeuer', group: 'dequeuer', doc: 'After the broker closes the consuming channel or cancels the consumer, relayq consumes again with backoff; if it cannot for this long, /livez fails so the pod is restarted.' }),
  DEQUEUER_POOL_SIZE: v({ name: 'DEQUEUER_POOL_SIZE', parse: p.int(1, 65535), scope: 'dequeuer', group: 'dequeuer', doc: 'ProxyMQ name. Keep-alive connections to the service (default: DEQUEUER_CONCURRENCY, so no message waits for a socket).' }),
  METRICS_PORT: v({ name: 'METRICS_PORT', parse: p.port, default: '8001', scope: 'dequeuer', group: 'dequeuer', doc: 'Admin port of the dequeuer: /metrics, /livez, /healthz, /readyz, /startupz, POST /drain.' }),
  METRICS_HOST: v({ name: 'METRICS_HOST', parse: p.hostname, default: '0.0.0.0', scope: 'dequeuer', group: 'dequeuer', doc: 'Address of the admin port.' }),
  DEQUEUER_QUEUE_TYPE: v({ name: 'DEQUEUER_QUEUE_TYPE', parse: p.oneOf('classic', 'quorum'), default: 'classic', scope: 'dequeuer', group: 'dead letters', doc: 'Type of the queues relayq declares. `classic` matches ProxyMQ; `quorum` is RabbitMQ\'s choice for data safety.' }),
  DEQUEUER_DECLARE_QUEUES: v({ name: 'DEQUEUER_DECLARE_QUEUES', parse: p.bool, default: 'true', scope: 'dequeuer', group: 'dead letters', doc: '`false`: do not put arguments on the request queue (declare it bare if missing) so a policy can manage dead-lettering and TTL.' }),
  DEQUEUER_IDEMPOTENCY_REDIS_URL: v({ name: 'DEQUEUER_IDEMPOTENCY_REDIS_URL', parse: p.str, scope: 'dequeuer', group: 'dead letters', secret: true, file: true, doc: 'redis:// URL where the dequeuer records the service\'s answer to each request with an Idempotency-Key (ENQUEUER_IDEMPOTENCY=true) before replying and acking, so a redelivery (a crash before the ack) or a DLQ replay of it is answered from the record without calling the service again. Unset: not recorded.' }),
  DEQUEUER_IDEMPOTENCY_TTL: v({ name: 'DEQUEUER_IDEMPOTENCY_TTL', parse: p.int(1, 30 * 86400), default: '86400', scope: 'dequeuer', group: 'dead letters', doc: 'Seconds a recorded answer is kept (DEQUEUER_IDEMPOTENCY_REDIS_URL).' }),
  DEQUEUER_MAX_ATTEMPTS: v({ name: 'DEQUEUER_MAX_ATTEMPTS', parse: p.int(1, 100), default: '3', scope: 'dequeuer', group: 'dead letters', doc: 'Deliveries of a message in all (crashes included) before it is dead-lettered.' }),
  DEQUEUER_RETRY_DELAY_MS: v({ name: 'DEQUEUER_RETRY_DELAY_MS', parse: p.int(1, 86400000), default: '1000', scope: 'dequeuer', group: 'dead letters', doc: 'Delay before the first retry; doubles per attempt, with up to 20% jitter.' }),
  DEQUEUER_RETRY_MAX_DELAY_MS: v({ name: 'DEQUEUER_RETRY_MAX_DELAY_MS', parse: p.int(1, 86400000), default: '30000', scope: 'dequeuer', group: 'dead letters', doc: 'Cap of the retry delay.' }),
  DEQUEUER_RETRY_STATUSES: v({ name: 'DEQUEUER_RETRY_STATUSES', parse: p.list(p.status), default: '', scope: 'dequeuer', group: 'dead letters', doc: 'Service statuses treated as failures and retried (e.g. `503` for a service warming up). Empty: every answer is replied as is.' }),
  DEQUEUER_EXPIRED: v({ name: 'DEQUEUER_EXPIRED', parse: p.oneOf('dead-letter', 'drop'), default: 'dead-letter', scope: 'dequeuer', group: 'dead letters', doc: 'What to do with a message whose caller\'s deadline has passed: dead-letter it (reason `expired`) or drop it. Counted either way.' }),
  DEQUEUER_DELIVERY_LIMIT: v({ name: 'DEQUEUER_DELIVERY_LIMIT', parse: p.int(1, 1000000), default: '20', scope: 'dequeuer', group: 'dead letters', doc: 'Quorum queues: the broker\'s `x-delivery-limit`, a backstop behind relayq\'s own count (RabbitMQ 4.x default). Must exceed DEQUEUER_MAX_ATTEMPTS.' }),
  DEQUEUER_MAX_REPLY_BYTES: v({ name: 'DEQUEUER_MAX_REPLY_BYTES', parse: p.int(0, 512 * MiB), default: String(15 * MiB), scope: 'dequeuer', group: 'dead letters', doc: 'Largest service response relayq publishes; larger gets the client a 502 RQ_ERR_RESPONSE_TOO_LARGE. Below the broker\'s max message size (128 MiB on 3.x, 16 MiB on 4.x).' }),
  DEQUEUER_STREAM_THRESHOLD_BYTES: v({ name: 'DEQUEUER_STREAM_THRESHOLD_BYTES', parse: p.int(0, 512 * MiB), default: String(1 * MiB), scope: 'dequeuer', group: 'dead letters', doc: 'Responses streamed to an enqueuer that takes streams: `text/event-stream`, a Content-Length above this many bytes, or no Content-Length and a body still coming after 50 ms or 64 KiB (docs/streaming.md). 0: never stream.' }),
  DEQUEUER_MAX_MESSAGE_BYTES: v({ name: 'DEQUEUER_MAX_MESSAGE_BYTES', parse: p.int(0, 512 * MiB), default: String(16 * MiB), scope: 'dequeuer', group: 'dead letters', doc: 'Largest request message forwarded; larger is dead-lettered as `too_large`.' }),
  RELAYQ_MESSAGE_KEY: v({ name: 'RELAYQ_MESSAGE_KEY', parse: p.secretKey, scope: 'dequeuer', group: 'dead letters', secret: true, file: true, doc: 'Key (32+ characters, the same on every dequeuer of a service) signing relayq\'s control headers (`x-relayq-attempts`, `x-relayq-lost-deliveries`, `x-relayq-first-attempt-at`) on the copies it republishes. When set, unsigned or wrongly signed control headers are ignored, so an AMQP publisher cannot forge attempt counts or drive careful mode. Unset: control headers are trusted (see Security).' }),
  DEQUEUER_MAX_LENGTH: v({ name: 'DEQUEUER_MAX_LENGTH', parse: p.int(0, 2 ** 31 - 1), default: '0', scope: 'dequeuer', group: 'dead letters', doc: 'Broker-side bound of the request queue: `x-max-length` with `x-overflow: reject-publish`, so enqueuers get their publish refused (503 `RQ_ERR_PUBLISH_NACKED`) instead of filling the broker while the service is at zero. 0: none.' }),
  MESSAGE_TTL_MS: v({ name: 'MESSAGE_TTL_MS', parse: p.int(0, 2 ** 31 - 1), default: '0', scope: 'dequeuer', group: 'dead letters', doc: 'Queue TTL (`x-message-ttl`) of the request queue relayq declares. 0: none (each message still carries its caller\'s deadline).' }),
  DLQ_POLL_INTERVAL_MS: v({ name: 'DLQ_POLL_INTERVAL_MS', parse: p.int(0, 3600000), default: '10000', scope: 'dequeuer', group: 'dead letters', doc: 'How often the dead-letter queue depth gauge is refreshed. 0 disables it.' }),

  // ---- dequeuer: breaker and health ----
  CIRCUIT_BREAKER_ENABLED: v({ name: 'CIRCUIT_BREAKER_ENABLED', parse: p.bool, default: 'true', scope: 'dequeuer', group: 'breaker', doc: 'Stop consuming while the service keeps failing.' }),
  CIRCUIT_BREAKER_ERROR_PERCENT: v({ name: 'CIRCUIT_BREAKER_ERROR_PERCENT', parse: p.num(1, 100), default: '50', scope: 'dequeuer', group: 'breaker', doc: 'Failure percentage in the rolling window that opens the breaker.' }),
  CIRCUIT_BREAKER_VOLUME: v({ name: 'CIRCUIT_BREAKER_VOLUME', parse: p.int(1, 1000000), default: '10', scope: 'dequeuer', group: 'breaker', doc: 'Calls in the window before the breaker may open.' }),
  CIRCUIT_BREAKER_WINDOW_MS: v({ name: 'CIRCUIT_BREAKER_WINDOW_MS', parse: p.int(100, 3600000), default: '10000', scope: 'dequeuer', group: 'breaker', doc: 'Rolling window of the failure statistics.' }),
  CIRCUIT_BREAKER_RESET_MS: v({ name: 'CIRCUIT_BREAKER_RESET_MS', parse: p.int(10, 3600000), default: '5000', scope: 'dequeuer', group: 'breaker', doc: 'Time open before a half-open probe.' }),
  CIRCUIT_BREAKER_FAILURE_STATUSES: v({ name: 'CIRCUIT_BREAKER_FAILURE_STATUSES', parse: p.list(p.status), default: '502,503,504', scope: 'dequeuer', group: 'breaker', doc: 'Service statuses the breaker counts as failures (connection errors and timeouts always count).' }),
  HEALTH_CHECK_URL: v({ name: 'HEALTH_CHECK_URL', parse: p.httpUrl, scope: 'dequeuer', group: 'health', doc: 'ProxyMQ name. Service health URL: relayq consumes only while it answers 2xx. Unset: no gating.' }),
  HEALTH_CHECK_INTERVAL: v({ name: 'HEALTH_CHECK_INTERVAL', parse: p.num(0.05, 3600), default: '5', scope: 'dequeuer', group: 'health', doc: 'ProxyMQ name. Seconds between health checks.' }),
  HEALTH_CHECK_TIMEOUT: v({ name: 'HEALTH_CHECK_TIMEOUT', parse: p.num(0.01, 600), default: '10', scope: 'dequeuer', group: 'health', doc: 'ProxyMQ name. Seconds a health check may take.' }),
  HEALTH_CHECK_MAX_RETRIES: v({ name: 'HEALTH_CHECK_MAX_RETRIES', parse: p.int(0, 1000000), default: '0', scope: 'dequeuer', group: 'health', doc: 'ProxyMQ name. Failed checks at start-up before giving up (exit 1). 0: wait for ever.' }),

  // ---- dequeuer: batch mode ----
  BATCH_MODE: v({ name: 'BATCH_MODE', parse: p.bool, default: 'false', scope: 'dequeuer', group: 'batch', doc: 'ProxyMQ name. Send queued requests to the service in batches.' }),
  BATCH_DOWNSTREAM_URL: v({ name: 'BATCH_DOWNSTREAM_URL', parse: p.httpUrl, scope: 'dequeuer', group: 'batch', doc: 'ProxyMQ name. URL that takes a batch (POST) and tells its size (GET `{"batch_size": N}`).' }),
  BATCH_SIZE: v({ name: 'BATCH_SIZE', parse: p.int(1, 10000), scope: 'dequeuer', group: 'batch', doc: 'Messages per batch. Unset: asked from BATCH_DOWNSTREAM_URL at start-up (ProxyMQ behaviour), 1 if that fails.' }),
  BATCH_WINDOW_MS: v({ name: 'BATCH_WINDOW_MS', parse: p.int(0, 60000), default: '20', scope: 'dequeuer', group: 'batch', doc: 'How long to wait to fill a batch.' }),
  BATCH_TIMEOUT_MS: v({ name: 'BATCH_TIMEOUT_MS', parse: p.int(1, 86400000), default: '30000', scope: 'dequeuer', group: 'batch', doc: 'Time the service has to answer a batch call.' }),

  // ---- tracing (OpenTelemetry's own names, read by relayq alone) ----
  OTEL_SDK_DISABLED: v({ name: 'OTEL_SDK_DISABLED', parse: p.bool, default: 'false', scope: 'all', group: 'tracing', doc: '`true` turns tracing off whatever the other OTEL_* variables say.' }),
  OTEL_TRACES_EXPORTER: v({ name: 'OTEL_TRACES_EXPORTER', parse: p.oneOf('otlp', 'none'), scope: 'all', group: 'tracing', doc: '`otlp` turns tracing on, `none` off. Unset: on when an OTLP endpoint variable is set, otherwise off (`traceparent` is passed through unchanged).' }),
  OTEL_EXPORTER_OTLP_ENDPOINT: v({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', parse: p.httpUrl, scope: 'all', group: 'tracing', doc: 'Base URL of the OTLP/HTTP receiver; spans go to its `/v1/traces`. Unset (and no traces endpoint): `http://localhost:4318`.' }),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: v({ name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', parse: p.httpUrl, scope: 'all', group: 'tracing', doc: 'Full URL spans are sent to, used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT.' }),
  OTEL_EXPORTER_OTLP_PROTOCOL: v({ name: 'OTEL_EXPORTER_OTLP_PROTOCOL', parse: p.oneOf('http/protobuf', 'http/json'), scope: 'all', group: 'tracing', doc: 'OTLP encoding of every signal: `http/protobuf` or `http/json` (gRPC is not supported). Unset: `http/protobuf`.' }),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: v({ name: 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', parse: p.oneOf('http/protobuf', 'http/json'), scope: 'all', group: 'tracing', doc: 'OTLP encoding of spans; wins over OTEL_EXPORTER_OTLP_PROTOCOL.' }),
  OTEL_EXPORTER_OTLP_HEADERS: v({ name: 'OTEL_EXPORTER_OTLP_HEADERS', parse: p.keyValues, scope: 'all', group: 'tracing', secret: true, file: true, doc: 'Headers sent with every export, `key=value` pairs separated by commas, values percent-encoded (e.g. `authorization=Bearer%20x`).' }),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: v({ name: 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', parse: p.int(1, 600000), default: '10000', scope: 'all', group: 'tracing', doc: 'Milliseconds one export may take; a slower collector loses that batch (counted in relayq_tracing_spans_dropped_total).' }),
  OTEL_BSP_MAX_QUEUE_SIZE: v({ name: 'OTEL_BSP_MAX_QUEUE_SIZE', parse: p.int(1, 1000000), default: '2048', scope: 'all', group: 'tracing', doc: 'Finished spans held for export (queued or being sent); beyond it new spans are dropped and counted, never waited for.' }),
  OTEL_SERVICE_NAME: v({ name: 'OTEL_SERVICE_NAME', parse: p.str, scope: 'all', group: 'tracing', doc: 'The `service.name` of relayq\'s spans. Unset: `service.name` from OTEL_RESOURCE_ATTRIBUTES, else `relayq-enqueuer` or `relayq-dequeuer`.' }),
  OTEL_RESOURCE_ATTRIBUTES: v({ name: 'OTEL_RESOURCE_ATTRIBUTES', parse: p.keyValues, scope: 'all', group: 'tracing', doc: 'Resource attributes, `key=value` pairs separated by commas, values percent-encoded (e.g. `deployment.environment.name=prod`).' }),
  OTEL_TRACES_SAMPLER: v({ name: 'OTEL_TRACES_SAMPLER', parse: p.oneOf('always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'), default: 'parentbased_always_on', scope: 'all', group: 'tracing', doc: 'Which requests are traced. `parentbased_*` follow the caller\'s sampled flag when it sends `traceparent`.' }),
  OTEL_TRACES_SAMPLER_ARG: v({ name: 'OTEL_TRACES_SAMPLER_ARG', parse: p.num(0, 1), default: '1', scope: 'all', group: 'tracing', doc: 'The ratio of the `*traceidratio` samplers, from 0 to 1 (0.01: one request in a hundred).' }),
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each entry keeps its own parser type
} as const satisfies Record<string, VarSpec<any>>

export type SpecName = keyof typeof SPEC
export type SpecValue<K extends SpecName> = ReturnType<(typeof SPEC)[K]['parse']>
/** Variables with a default in the table: reading one always gives a value. */
export type DefaultedName = { [K in SpecName]: (typeof SPEC)[K] extends { readonly default: string } ? K : never }[SpecName]
