// The enqueuer: an HTTP server at the edge that publishes each request to its
// service's queue and answers with the reply. startEnqueuer() returns a
// handle, so tests run it in-process and main.ts runs it for real.
import cluster from 'node:cluster'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import net from 'node:net'
import type { Logger } from 'pino'
import { BrokerConnection } from '../amqp/connection'
import type { AsyncConfig, Config } from '../config/types'
import { ADMIN_PATHS, createAdminServer, handleAdmin, type AdminHooks } from '../http/admin'
import { sendError } from '../http/respond'
import { ResponseSender } from '../http/send'
import { createHttpServer, listen } from '../http/server'
import { createEnqueuerMetrics } from '../metrics/enqueuer'
import type { Registry } from '../metrics/registry'
import { TokenSet } from './auth'
import type { EnqueuerContext } from './context'
import { handleServiceRequest } from './handler'
import { ClusterJobStore } from './jobs/cluster-store'
import { Jobs } from './jobs/jobs'
import { MemoryJobStore } from './jobs/memory-store'
import { RedisJobStore } from './jobs/redis-store'
import type { JobStore } from './jobs/store'
import { QueueChecker } from './queue-check'
import { RpcPool } from './rpc-pool'
import { ServiceBreakers } from './service-breaker'

export interface EnqueuerDeps {
  readonly logger: Logger
  /** Null when METRICS_ENABLED=false. */
  readonly registry: Registry | null
  /** Overrides /metrics (cluster workers serve the primary's aggregate). */
  readonly metricsText?: () => Promise<{ contentType: string, body: string }>
  /** The job store; default: Redis when configured, else memory (or the cluster primary's, in a worker). */
  readonly jobStore?: JobStore
  /** Names this enqueuer's own results queue (in-memory job store); the workers of one primary share it. */
  readonly instanceId?: string
  /** Listen on this handle instead of ENQUEUER_PORT (tests pass 0). */
  readonly port?: number
  readonly adminPort?: number
}

export interface RunningEnqueuer {
  readonly port: number
  readonly adminPort: number | null
  /** Resolves once the broker connection is first up; rejects on a fatal setup error. */
  readonly connected: Promise<void>
  readonly context: EnqueuerContext
  drain: () => Promise<void>
  close: () => Promise<void>
}

export async function startEnqueuer (config: Config, deps: EnqueuerDeps): Promise<RunningEnqueuer> {
  const cfg = config.enqueuer
  if (cfg === null) throw new Error('startEnqueuer needs the enqueuer configuration')
  const { logger, registry } = deps
  const pool = new RpcPool(cfg.channels, logger, () => metrics.lateReply())
  const checker = new QueueChecker(cfg.queueCheckTtlMs, logger)
  const connection: BrokerConnection = new BrokerConnection({
    name: 'enqueuer',
    broker: config.broker,
    logger,
    setup: async (conn) => {
      checker.attach(conn)
      await pool.attach(conn)
      await jobs?.attach(conn)
    },
    onReconnect: () => metrics.reconnected(),
  })
  const metrics = createEnqueuerMetrics(registry, cfg.replyTimeoutMs / 1000, {
    inflight: () => ctx.inflight,
    pendingReplies: () => pool.pendingReplies,
    brokerUp: () => connection.up,
    brokerBlocked: () => connection.blocked,
    bufferedBytes: () => sender.bufferedBytes,
  })
  const sender = new ResponseSender({ sendTimeoutMs: cfg.sendTimeoutMs, maxBufferedBytes: cfg.maxBufferedBytes }, () => metrics.sendTimedOut())
  const breakers = new ServiceBreakers(cfg.breaker, (service, state) => {
    metrics.breaker(service, state)
    logger.warn({ service, state }, 'service breaker changed state')
  })
  const jobs = cfg.async.enabled ? new Jobs(cfg.async, deps.jobStore ?? defaultJobStore(cfg.async), logger, metrics, deps.instanceId ?? randomBytes(6).toString('hex')) : null
  const ctx: EnqueuerContext = {
    config: cfg,
    logger,
    metrics,
    connection,
    pool,
    checker,
    breakers,
    tokens: cfg.authTokensFile === null ? null : TokenSet.fromFile(cfg.authTokensFile),
    jobs,
    sender,
    inflight: 0,
    notReady: false,
    draining: false,
    onIdle: null,
  }
  connection.on('down', () => {
    pool.detach()
    checker.detach()
    jobs?.detach()
  })

  const hooks: AdminHooks = {
    metrics: deps.metricsText ?? (async () => ({ contentType: registry?.contentType ?? 'text/plain', body: registry === null ? '' : await registry.metrics() })),
    notReadyReason: () => {
      if (ctx.notReady) return 'draining'
      if (!connection.up || !pool.ready) return 'not connected to the broker'
      return null
    },
  }
  const adminOnMainPort = cfg.admin === null
  const server = createHttpServer(cfg, (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url)
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
  })
  const port = await listen(server, deps.port ?? cfg.port, cfg.host)
  let adminServer: Server | null = null
  let adminPort: number | null = null
  const drain = onceAsync(() => drainEnqueuer(ctx, server, cfg.drainDelayMs, config.shutdownTimeoutMs))
  if (cfg.admin !== null) {
    adminServer = createAdminServer({ ...hooks, drain })
    adminPort = await listen(adminServer, deps.adminPort ?? cfg.admin.port, cfg.admin.host)
  }
  const connected = connection.waitUntilUp()
  connected.catch(() => {})
  connection.start()

  return {
    port,
    adminPort,
    connected,
    context: ctx,
    drain,
    close: onceAsync(async () => {
      await drain()
      await jobs?.close()
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

/**
 * Drain, in order: (1) readiness goes 503 and, for ENQUEUER_DRAIN_DELAY_SECONDS,
 * requests are still served while load balancers take the endpoint out;
 * (2) stop accepting connections, and answer any new request on an open one
 * 503 with Connection: close; (3) wait for in-flight requests up to the
 * shutdown timeout; (4) answer whatever still waits 503; (5) close every
 * connection.
 */
async function drainEnqueuer (ctx: EnqueuerContext, server: Server, delayMs: number, timeoutMs: number): Promise<void> {
  ctx.notReady = true
  ctx.logger.info({ inflight: ctx.inflight, delayMs }, 'draining')
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
  ctx.draining = true
  // net.Server's close stops listening only; http.Server's would also drop idle
  // keep-alive connections, racing any request a client is sending on one.
  net.Server.prototype.close.call(server)
  if (ctx.inflight > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs)
      ctx.onIdle = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    ctx.onIdle = null
  }
  if (ctx.inflight > 0) {
    ctx.logger.warn({ inflight: ctx.inflight }, 'drain timeout: answering the remaining requests 503')
    ctx.pool.shutdown()
  }
  server.closeAllConnections()
  ctx.logger.info('drained')
}

function defaultJobStore (cfg: AsyncConfig): JobStore {
  if (cfg.redisUrl !== null) return new RedisJobStore(cfg.redisUrl)
  return cluster.isWorker ? new ClusterJobStore() : new MemoryJobStore(cfg.maxJobs)
}

function pathOf (url: string | undefined): string {
  const u = url ?? '/'
  const q = u.indexOf('?')
  return q === -1 ? u : u.slice(0, q)
}

function onceAsync (fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null
  return () => (p ??= fn())
}
