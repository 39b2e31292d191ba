// The enqueuer: an HTTP server at the edge that publishes each request to its
// service's queue and answers with the reply. startEnqueuer() returns a
// handle, so tests run it in-process and main.ts runs it for real.
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import net from 'node:net'
import type { Logger } from 'pino'
import { BrokerConnection, FatalSetupError } from '../amqp/connection'
import { bodyLimitProblemAtConnect } from '../config/broker-limits'
import type { Config, EnqueuerConfig } from '../config/types'
import { ADMIN_PATHS, createAdminServer, handleAdmin, type AdminHooks } from '../http/admin'
import { sendError } from '../http/respond'
import { ResponseSender } from '../http/send'
import { createHttpServer, listen } from '../http/server'
import { createEnqueuerMetrics } from '../metrics/enqueuer'
import type { Registry } from '../metrics/registry'
import { Admission } from './admission'
import { TokenSet } from './auth'
import { ForwardedFor } from './forwarded'
import type { EnqueuerContext } from './context'
import { handleServiceRequest } from './handler'
import { defaultIdempotencyStore } from './idempotency/default-store'
import { Idempotency } from './idempotency/idempotency'
import type { IdempotencyStore } from './idempotency/store'
import { defaultJobStore } from './jobs/default-store'
import { Jobs } from './jobs/jobs'
import type { JobStore } from './jobs/store'
import { QueueChecker } from './queue-check'
import { ColdStart } from './cold-start'
import { RpcPool } from './rpc-pool'
import { streamAnnouncement } from './stream'
import { ServiceBreakers } from './service-breaker'
import { startScaler } from './scaler/server'
import type { Tracing } from '../tracing/tracing'

export interface EnqueuerDeps {
  readonly logger: Logger
  /** Null when METRICS_ENABLED=false. */
  readonly registry: Registry | null
  /** Overrides /metrics (cluster workers serve the primary's aggregate). */
  readonly metricsText?: () => Promise<{ contentType: string, body: string }>
  /** The job store; default: Redis when configured, else memory (or the cluster primary's, in a worker). */
  readonly jobStore?: JobStore
  /** The idempotency key store; default as for jobs (Redis, memory, or the cluster primary's). */
  readonly idempotencyStore?: IdempotencyStore
  /** Names this enqueuer's own results queue (in-memory job store); the workers of one primary share it. */
  readonly instanceId?: string
  /** Listen on this handle instead of ENQUEUER_PORT (tests pass 0). */
  readonly port?: number
  readonly adminPort?: number
  /** Serve the KEDA scaler on this port instead of KEDA_SCALER_PORT (tests pass 0). */
  readonly scalerPort?: number
  /** Called once a drain has finished (POST /drain or close): main.ts closes and exits 0. */
  readonly onDrained?: () => void
  /**
   * Take connections only once the broker connection is up, or after this
   * long at most. For cluster workers: they share one port, so a worker that
   * restarts after a crash would otherwise be handed connections it can only
   * answer 503 while its siblings could serve them.
   */
  readonly listenAfterConnectMs?: number
  /** Null (or absent) unless tracing is on. */
  readonly tracing?: Tracing | null
}

export interface RunningEnqueuer {
  readonly port: number
  readonly adminPort: number | null
  /** KEDA_SCALER_PORT's bound port; null when off. */
  readonly scalerPort: number | null
  /** Resolves once the broker connection is first up; rejects on a fatal setup error. */
  readonly connected: Promise<void>
  /** The same promise under the name both modes share. */
  readonly ready: Promise<void>
  readonly context: EnqueuerContext
  /** In-flight counts (tests and metrics read them here). */
  readonly admission: Admission
  drain: () => Promise<void>
  close: () => Promise<void>
}

export async function startEnqueuer (config: Config, deps: EnqueuerDeps): Promise<RunningEnqueuer> {
  const cfg = config.enqueuer
  if (cfg === null) throw new Error('startEnqueuer needs the enqueuer configuration')
  const ctx = createContext(config, cfg, deps)
  const { connection, pool, jobs, idempotency } = ctx
  let notReady = false
  const hooks = adminHooks(ctx, deps, () => notReady)
  const server = createHttpServer(cfg, router(ctx, hooks))
  const connected = connection.waitUntilUp()
  connected.catch(() => {})
  connection.start()
  if (deps.listenAfterConnectMs !== undefined) await upOrAfter(connected, ctx, deps.listenAfterConnectMs)
  const port = await listen(server, deps.port ?? cfg.port, cfg.host, { port: 'ENQUEUER_PORT', host: 'ENQUEUER_HOST', logger: deps.logger })
  const drain = onceAsync(async () => {
    notReady = true
    await drainEnqueuer(ctx, server, cfg.drainDelayMs, config.shutdownTimeoutMs)
    deps.onDrained?.()
  })
  const adminServer = cfg.admin === null ? null : createAdminServer({ ...hooks, drain })
  const adminPort = adminServer === null || cfg.admin === null ? null : await listen(adminServer, deps.adminPort ?? cfg.admin.port, cfg.admin.host, { port: 'ADMIN_PORT', host: 'ADMIN_HOST', logger: deps.logger })
  const scalerPortWanted = deps.scalerPort ?? cfg.coldStart.scalerPort
  const scaler = scalerPortWanted === null ? null : await startScaler(scalerPortWanted, cfg.host, { logger: deps.logger, coldStart: ctx.coldStart, state: (q) => ctx.checker.state(q), services: cfg.services })
  // A job callback must never reach these (a callback to the admin /drain drained the enqueuer).
  jobs?.callbacks.addOwnPorts([port, adminPort, cfg.port, cfg.admin?.port, scaler?.port])

  return {
    port,
    adminPort,
    scalerPort: scaler?.port ?? null,
    connected,
    ready: connected,
    context: ctx,
    admission: ctx.admission,
    drain,
    // Shutdown: (1) drain the requests, (2) the job and idempotency stores, (3) the channels,
    // (4) the broker connection, (5) client connections, (6) the admin server.
    close: onceAsync(async () => {
      await drain()
      scaler?.close()
      ctx.coldStart?.close()
      await jobs?.close()
      await idempotency?.store.close()
      await pool.close()
      await connection.close()
      server.closeAllConnections()
      if (adminServer !== null) {
        adminServer.closeAllConnections()
        await new Promise<void>((resolve) => adminServer.close(() => resolve()))
      }
    }),
  }
}

/** The parts of the request path, wired to the broker connection that feeds them. */
function createContext (config: Config, cfg: EnqueuerConfig, deps: EnqueuerDeps): EnqueuerContext {
  const { logger, registry } = deps
  const pool = new RpcPool(cfg.channels, logger, () => metrics.lateReply())
  const checker = new QueueChecker(cfg.queueCheckTtlMs, logger, { newChecksPerSecond: cfg.newServiceChecksPerSecond, checkTimeoutMs: cfg.publishTimeoutMs })
  const connection: BrokerConnection = new BrokerConnection({
    name: 'enqueuer',
    broker: config.broker,
    logger,
    setup: async (conn) => {
      const tooLarge = bodyLimitProblemAtConnect(cfg.maxBodyBytes, cfg.maxHeaderBytes, config.broker.maxMessageBytes, conn.connection.serverProperties.version)
      if (tooLarge !== null) throw new FatalSetupError(tooLarge)
      checker.attach(conn)
      await pool.attach(conn)
      await jobs?.attach(conn)
    },
    onReconnect: () => metrics.reconnected(),
  })
  const admission = new Admission(cfg.maxInflight, cfg.maxInflightPerService)
  const coldStart = cfg.coldStart.noConsumers === 'wait'
    ? new ColdStart({ maxWaiting: cfg.coldStart.maxWaiting, state: (q) => checker.state(q), observe: (service, s) => metrics.coldStart(service, s), sawConsumer: (q) => checker.sawConsumer(q) })
    : null
  const metrics = createEnqueuerMetrics(registry, cfg.replyTimeoutMs / 1000, {
    inflight: () => admission.inflight,
    pendingReplies: () => pool.pendingReplies,
    brokerUp: () => connection.up,
    brokerBlocked: () => connection.blocked,
    bufferedBytes: () => sender.bufferedBytes,
    waitingForConsumer: () => coldStart?.counts() ?? new Map(),
  })
  const sender = new ResponseSender({ sendTimeoutMs: cfg.sendTimeoutMs, maxBufferedBytes: cfg.maxBufferedBytes }, () => metrics.sendTimedOut())
  const breakers = new ServiceBreakers(cfg.breaker, (service, state) => {
    metrics.breaker(service, state)
    logger.warn({ service, state }, 'service breaker changed state')
  })
  const jobs = cfg.async.enabled ? new Jobs(cfg.async, deps.jobStore ?? defaultJobStore(cfg.async), logger, metrics, deps.instanceId ?? randomBytes(6).toString('hex'), sender) : null
  connection.on('down', () => {
    pool.detach()
    checker.detach()
    jobs?.detach()
  })
  return {
    config: cfg,
    logger,
    metrics,
    connection,
    pool,
    checker,
    breakers,
    tokens: cfg.authTokensFile === null ? null : TokenSet.fromFile(cfg.authTokensFile),
    jobs,
    idempotency: cfg.idempotency.enabled
      ? new Idempotency(cfg.idempotency, deps.idempotencyStore ?? defaultIdempotencyStore(cfg.idempotency), logger, metrics, cfg.maxInflight)
      : null,
    admission,
    forwarded: new ForwardedFor(cfg.trustedProxies),
    sender,
    coldStart,
    streamAccept: streamAnnouncement(cfg),
    tracing: deps.tracing ?? null,
  }
}

function adminHooks (ctx: EnqueuerContext, deps: EnqueuerDeps, draining: () => boolean): AdminHooks {
  const { registry } = deps
  return {
    metrics: deps.metricsText ?? (async () => ({ contentType: registry?.contentType ?? 'text/plain', body: registry === null ? '' : await registry.metrics() })),
    notReadyReason: () => {
      if (draining()) return 'draining'
      if (!ctx.connection.up || !ctx.pool.ready) return 'not connected to the broker'
      return ctx.jobs?.notReadyReason() ?? null
    },
  }
}

/**
 * Drain, in order: (1) readiness goes 503 and, for ENQUEUER_DRAIN_DELAY_SECONDS,
 * requests are still served while load balancers take the endpoint out;
 * (2) stop accepting connections, and answer any new request on an open one
 * 503 with Connection: close; (3) wait for in-flight requests up to the
 * shutdown timeout; (4) answer whatever still waits 503; (5) close every
 * connection.
 */
async function drainEnqueuer (ctx: EnqueuerContext, server: Server, delayMs: number, timeoutMs: number): Promise<void> {
  const { admission } = ctx
  ctx.logger.info({ inflight: admission.inflight, delayMs }, 'draining')
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
  admission.close()
  // net.Server's close stops listening only; http.Server's would also drop idle
  // keep-alive connections, racing any request a client is sending on one.
  net.Server.prototype.close.call(server)
  if (!await admission.idle(timeoutMs)) {
    ctx.logger.warn({ inflight: admission.inflight }, 'drain timeout: answering the remaining requests 503')
    ctx.pool.shutdown()
  }
  server.closeAllConnections()
  ctx.logger.info('drained')
}

/** Reserved paths first (admin, jobs), then `/{service}/...`. */
function router (ctx: EnqueuerContext, hooks: AdminHooks): (req: IncomingMessage, res: ServerResponse) => void {
  const adminOnMainPort = ctx.config.admin === null
  const { jobs } = ctx
  return (req, res) => {
    const path = pathOf(req.url)
    // With tokens configured, /metrics and /jobs/* need one too (before any lookup: a 403/404 told which job ids exist).
    if (ctx.tokens !== null && (path === '/metrics' || path.startsWith('/jobs/')) && !ctx.tokens.accepts(req.headers.authorization)) {
      sendError(res, 'RQ_ERR_UNAUTHORIZED', 'a valid bearer token is required')
      return
    }
    if (ADMIN_PATHS.has(path) && path !== '/drain') {
      if (adminOnMainPort) handleAdmin(req, res, hooks)
      else sendError(res, 'RQ_ERR_NOT_FOUND', 'admin endpoints are served on the admin port')
      return
    }
    if (path.startsWith('/jobs/') && jobs !== null) {
      if (req.method === 'GET' || req.method === 'HEAD') jobs.handleGet(req, res, path.slice('/jobs/'.length))
      else sendError(res, 'RQ_ERR_METHOD_NOT_ALLOWED', 'jobs are read with GET')
      return
    }
    handleServiceRequest(ctx, req, res)
  }
}

function pathOf (url: string | undefined): string {
  const u = url ?? '/'
  const q = u.indexOf('?')
  return q === -1 ? u : u.slice(0, q)
}

/** Resolves when `up` settles or after `ms`, whichever is first; never rejects (the caller handles `up` itself). */
function upOrAfter (up: Promise<void>, ctx: EnqueuerContext, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ctx.logger.warn({ ms }, 'broker not reachable yet: taking connections anyway')
      resolve()
    }, ms)
    const done = (): void => { clearTimeout(timer); resolve() }
    up.then(done, done)
  })
}

function onceAsync (fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null
  return () => (p ??= fn())
}
