// The dequeuer: a sidecar that consumes its service's queue, forwards each
// message to the service over HTTP, publishes the answer back and acks.
// startDequeuer() returns a handle, so tests run it in-process and main.ts
// runs it for real.
import type { Server } from 'node:http'
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import { BrokerConnection } from '../amqp/connection'
import { classify } from '../amqp/errors'
import { declareServiceTopology, deadLetterQueue, requestQueue, type TopologySettings } from '../amqp/topology'
import type { Config, DequeuerConfig } from '../config/types'
import { createAdminServer } from '../http/admin'
import { listen } from '../http/server'
import { createDequeuerMetrics } from '../metrics/dequeuer'
import type { Registry } from '../metrics/registry'
import { Batcher, discoverBatchSize } from './batch'
import { Breaker, type BreakerState } from './breaker'
import { Consumer } from './consumer'
import type { DequeuerContext } from './context'
import { Forwarder } from './forward'
import { Gate } from './gate'
import { HealthMonitor } from './health'
import { Isolation } from './isolation'
import { retryDelays } from './outcome'
import { processDelivery } from './process'
import { Publisher } from './publisher'

export interface DequeuerDeps {
  readonly logger: Logger
  readonly registry: Registry | null
  /** Listen on this port instead of METRICS_PORT (tests pass 0). */
  readonly adminPort?: number
  /** Called when the dequeuer cannot go on (a fatal topology error, health start-up given up). */
  readonly onFatal?: (err: Error) => void
}

export interface RunningDequeuer {
  readonly adminPort: number
  /** Resolves once the dequeuer first consumes; rejects on a fatal error. */
  readonly consuming: Promise<void>
  readonly context: DequeuerContext
  readonly gate: Gate
  drain: () => Promise<void>
  close: () => Promise<void>
}

export async function startDequeuer (config: Config, deps: DequeuerDeps): Promise<RunningDequeuer> {
  const cfg = config.dequeuer
  if (cfg === null) throw new Error('startDequeuer needs the dequeuer configuration')
  const { logger } = deps
  const queue = requestQueue(cfg.service)
  const log = logger.child({ service: cfg.service })
  let consumer: Consumer | null = null
  const gate = new Gate(() => { void consumer?.reconcile() })
  gate.pause('broker')
  gate.pause('publisher')
  const topology: TopologySettings = cfg
  const delays = retryDelays(cfg)
  const redeclare = (conn: ChannelModel): Promise<void> => declareServiceTopology(() => conn.createChannel(), topology, delays)
  const publisher = new Publisher(log, { redeclare })
  const forwarder = new Forwarder({
    origin: cfg.downstreamUrl.origin,
    connections: cfg.connections,
    maxResponseBytes: cfg.maxReplyBytes,
    connectTimeoutMs: Math.min(5000, cfg.downstreamTimeoutMs),
  })
  const consumeConn = new BrokerConnection({ name: 'consume', broker: config.broker, logger: log, setup: (conn) => setupConsume(conn), onReconnect: () => metrics.reconnected('consume') })
  const publishConn = new BrokerConnection({ name: 'publish', broker: config.broker, logger: log, setup: (conn) => publisher.attach(conn), onReconnect: () => metrics.reconnected('publish') })
  const metrics = createDequeuerMetrics(deps.registry, cfg.service, Math.max(cfg.downstreamTimeoutMs, cfg.batch.timeoutMs) / 1000, {
    inflight: () => ctx.inflight,
    prefetch: () => consumer?.currentPrefetch ?? cfg.concurrency,
    consuming: () => consumer?.consuming === true,
    consumeUp: () => consumeConn.up,
    publishUp: () => publishConn.up,
  })
  const breaker = new Breaker(cfg.breaker, (state) => onBreakerState(state))
  // Prefetch 1 while the breaker probes with one real message, or while careful after a crash.
  let breakerProbing = false
  const applyPrefetch = (): Promise<void> => consumer?.setPrefetch(breakerProbing || isolation.active ? 1 : cfg.concurrency) ?? Promise.resolve()
  const isolation = new Isolation({
    gate,
    stopConsuming: () => consumer?.reconcile() ?? Promise.resolve(),
    busy: () => ctx.inflight,
    applyPrefetch,
    onChange: (careful) => log.warn({ careful }, careful ? 'a message may have crashed this dequeuer: processing one at a time' : 'back to full prefetch'),
  }, cfg.concurrency)
  const ctx: DequeuerContext = { cfg, logger: log, debug: log.isLevelEnabled('debug'), metrics, publisher, forwarder, breaker, gate, isolation, batcher: null, queue, inflight: 0, onIdle: null }
  if (cfg.batch.enabled && cfg.batch.url !== null) {
    const batchCfg = { ...cfg.batch, url: cfg.batch.url }
    const size = await discoverBatchSize(batchCfg, log)
    ctx.batcher = new Batcher(ctx, batchCfg, size)
    log.info({ size, windowMs: cfg.batch.windowMs }, 'batch mode')
  }
  consumer = new Consumer({
    queue,
    prefetch: cfg.concurrency,
    gate,
    logger: log,
    onDelivery: (d) => processDelivery(ctx, d),
    // A closed channel or a cancelled consumer is restored in place: the connection and its other work stay.
    redeclare,
    backoff: { initialMs: config.broker.reconnectInitialMs, maxMs: config.broker.reconnectMaxMs },
  })

  async function setupConsume (conn: ChannelModel): Promise<void> {
    await redeclare(conn)
    await consumer!.attach(conn)
    gate.resume('starting')
    gate.resume('queue_missing')
    gate.resume('broker')
    await consumer!.reconcile()
  }
  consumeConn.on('down', () => {
    consumer?.detach()
    gate.pause('broker')
  })
  publishConn.on('up', () => {
    gate.resume('publisher')
    consumeConn.retryNow()
  })
  consumeConn.on('up', () => publishConn.retryNow())
  publishConn.on('blocked', () => publisher.setBlocked(true))
  publishConn.on('unblocked', () => publisher.setBlocked(false))
  publishConn.on('down', () => {
    publisher.detach()
    gate.pause('publisher')
  })

  let fatal: ((err: Error) => void) | null = null
  const consuming = new Promise<void>((resolve, reject) => {
    fatal = (err) => {
      reject(err)
      deps.onFatal?.(err)
    }
    const poll = setInterval(() => {
      if (consumer?.consuming === true) {
        clearInterval(poll)
        metrics.ready(Date.now() / 1000)
        resolve()
      }
    }, 10)
    poll.unref()
  })
  consuming.catch(() => {})
  consumeConn.on('fatal', (err) => fatal?.(err))
  publishConn.on('fatal', (err) => fatal?.(err))

  const health = cfg.health.url === null
    ? null
    : new HealthMonitor({ ...cfg.health, url: cfg.health.url }, log, metrics, {
      onHealthy: () => gate.resume('unhealthy'),
      onUnhealthy: () => gate.pause('unhealthy'),
      onGiveUp: (why) => fatal?.(new Error(`the service never became healthy: ${why}`)),
    })
  if (health !== null) gate.pause('unhealthy')

  function onBreakerState (state: BreakerState): void {
    metrics.breaker(state)
    log.warn({ state }, 'circuit breaker changed state')
    if (state === 'open') {
      breakerProbing = false
      gate.pause('breaker')
      return
    }
    if (state === 'closed') {
      breakerProbing = false
      void applyPrefetch()
      gate.resume('breaker')
      return
    }
    // Half-open: one probe. With a health URL, the probe is a health check;
    // otherwise one real message, with prefetch 1 so no other is held meanwhile.
    if (health !== null) {
      void breaker.run(async () => {
        const { ok, why } = await health.check()
        return ok ? { kind: 'response', status: 200, rawHeaders: [], body: Buffer.alloc(0) } : { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: why }
      })
      return
    }
    breakerProbing = true
    void applyPrefetch().then(() => gate.resume('breaker'))
  }

  const drain = once(() => drainDequeuer(ctx, consumer, config.shutdownTimeoutMs))
  const admin: Server = createAdminServer({
    metrics: async () => ({ contentType: deps.registry?.contentType ?? 'text/plain', body: deps.registry === null ? '' : await deps.registry.metrics() }),
    // A short pause to run a suspect alone is not a reason to leave the endpoints.
    notReadyReason: () => ((consumer?.consuming === true && gate.open) || gate.only('isolating') ? null : `not consuming: ${consumer?.problem ?? (gate.describe() || 'starting')}`),
    // A consumer the broker took away and relayq cannot restore: a restart is the remaining remedy.
    notLiveReason: () => (consumer !== null && consumer.problemForMs() > cfg.consumerRecoveryLimitMs ? `not consuming for ${Math.round(consumer.problemForMs() / 1000)} s: ${consumer.problem ?? ''}` : null),
    started: () => true,
    drain,
  })
  const adminPort = await listen(admin, deps.adminPort ?? cfg.admin.port, cfg.admin.host)
  const dlqPoll = cfg.dlqPollIntervalMs > 0 ? setInterval(() => { void pollDeadLetterDepth(consumeConn, cfg, log, (n) => metrics.dlqDepth(n), redeclare) }, cfg.dlqPollIntervalMs) : null
  dlqPoll?.unref()

  publishConn.start()
  consumeConn.start()
  health?.start()

  return {
    adminPort,
    consuming,
    context: ctx,
    gate,
    drain,
    close: once(async () => {
      await drain()
      if (dlqPoll !== null) clearInterval(dlqPoll)
      health?.stop()
      breaker.shutdown()
      await consumer.close()
      await consumeConn.close()
      await publisher.close()
      await publishConn.close()
      await ctx.batcher?.close()
      await forwarder.close()
      admin.closeAllConnections()
      await new Promise<void>((resolve) => admin.close(() => resolve()))
    }),
  }
}

/**
 * Drain, in order: (1) stop consuming (readiness goes 503); (2) let in-flight
 * messages finish, publish their replies and ack, while deliveries that were
 * already on their way are given back uncounted; (3) give up after the
 * shutdown timeout: whatever is still unacked returns to the queue when the
 * channel closes.
 */
async function drainDequeuer (ctx: DequeuerContext, consumer: Consumer, timeoutMs: number): Promise<void> {
  ctx.gate.pause('draining')
  await consumer.reconcile()
  ctx.logger.info({ inflight: ctx.inflight }, 'draining')
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
  if (ctx.inflight > 0) ctx.logger.warn({ inflight: ctx.inflight }, 'drain timeout: unfinished messages go back to the queue')
  ctx.logger.info('drained')
}

async function pollDeadLetterDepth (conn: BrokerConnection, cfg: DequeuerConfig, log: Logger, report: (n: number) => void, redeclare: (conn: ChannelModel) => Promise<void>): Promise<void> {
  const model = conn.model
  if (model === null) return
  const dlq = deadLetterQueue(cfg.service)
  try {
    const ch = await model.createChannel()
    ch.on('error', () => {})
    let closed = false
    ch.on('close', () => { closed = true })
    try {
      report((await ch.checkQueue(dlq)).messageCount)
    } finally {
      if (!closed) await ch.close().catch(() => {})
    }
  } catch (err) {
    if (classify(err).kind !== 'not_found') return // the next poll tries again
    // Dead letters published meanwhile came back to relayq (mandatory) and were kept; say so and put the queue back.
    log.error({ queue: dlq }, 'the dead-letter queue is missing; declaring it again')
    await redeclare(model).catch((e: Error) => log.warn({ err: e.message }, 'cannot declare the dead-letter queue again'))
  }
}

function once (fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null
  return () => (p ??= fn())
}
