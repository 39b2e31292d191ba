// The dequeuer: a sidecar that consumes its service's queue, forwards each
// message to the service over HTTP, publishes the answer back and acks.
// startDequeuer() composes the parts and returns a handle, so tests run it
// in-process and main.ts runs it for real. Policy lives in the parts: the
// message path in process.ts, the breaker's in breaker.ts, careful mode in
// isolation.ts.
import type { ChannelModel } from 'amqplib'
import type { Server } from 'node:http'
import type { Logger } from 'pino'
import { BrokerConnection } from '../amqp/connection'
import { classify } from '../amqp/errors'
import { declareServiceTopology, deadLetterQueue, requestQueue, type TopologySettings } from '../amqp/topology'
import type { Config, DequeuerConfig } from '../config/types'
import { createAdminServer } from '../http/admin'
import { listen } from '../http/server'
import { createDequeuerMetrics, type DequeuerMetrics } from '../metrics/dequeuer'
import type { Registry } from '../metrics/registry'
import { Batcher, discoverBatchSize } from './batch'
import { Breaker } from './breaker'
import { SingleCall, type CallStrategy } from './call'
import { Consumer } from './consumer'
import { ControlHeaders } from './control'
import { Forwarder } from './forward'
import { Gate, OneAtATime } from './gate'
import { HealthMonitor } from './health'
import { Inflight } from './inflight'
import { Isolation } from './isolation'
import { retryDelays } from './outcome'
import { createPipeline } from './process'
import { UnroutableWaits } from './settle'
import { DequeuerTracing } from '../tracing/dequeuer'
import type { Tracing } from '../tracing/tracing'
import { RecordedAnswers } from './answers'
import { Publisher } from './publisher'
import { StreamChannel } from './stream'

export interface DequeuerDeps {
  readonly logger: Logger
  readonly registry: Registry | null
  /** Listen on this port instead of METRICS_PORT (tests pass 0). */
  readonly adminPort?: number
  /** Called when the dequeuer cannot go on (a fatal topology error, health start-up given up). */
  readonly onFatal?: (err: Error) => void
  /** Called once a drain has finished (POST /drain or close): main.ts closes and exits 0. */
  readonly onDrained?: () => void
  /** Null (or absent) unless tracing is on. */
  readonly tracing?: Tracing | null
}

export interface RunningDequeuer {
  readonly adminPort: number
  /** Resolves once the dequeuer first consumes; rejects on a fatal error. */
  readonly consuming: Promise<void>
  /** The same promise as `consuming`, under the name both modes' handles share. */
  readonly ready: Promise<void>
  readonly gate: Gate
  readonly inflight: Inflight
  readonly isolation: Isolation
  drain: () => Promise<void>
  close: () => Promise<void>
}

/** How long careful mode outlasts the last suspect while suspects counted elsewhere may still come. */
const CAREFUL_QUIET_MS = 2000

export async function startDequeuer (config: Config, deps: DequeuerDeps): Promise<RunningDequeuer> {
  const cfg = config.dequeuer
  if (cfg === null) throw new Error('startDequeuer needs the dequeuer configuration')
  const log = deps.logger.child({ service: cfg.service })
  const queue = requestQueue(cfg.service)
  // 1. What the message path shares: why consumption is paused, what is in flight, where replies go.
  const gate = new Gate()
  gate.pause('broker')
  gate.pause('publisher')
  const inflight = new Inflight()
  const topology: TopologySettings = cfg
  const delays = retryDelays(cfg)
  const redeclare = (conn: ChannelModel): Promise<void> => declareServiceTopology(() => conn.createChannel(), topology, delays)
  const publisher = new Publisher(log, { redeclare })
  // Set below once metrics exist; the publishing connection starts after that.
  let streams: StreamChannel | null = null
  const startup = startupSignal(deps.onFatal)
  const consumeConn = new BrokerConnection({ name: 'consume', broker: config.broker, logger: log, setup: (conn) => setupConsume(conn), onReconnect: () => metrics.reconnected('consume') })
  const setupPublish = async (conn: ChannelModel): Promise<void> => {
    await publisher.attach(conn)
    await streams?.attach(conn)
  }
  const publishConn = new BrokerConnection({ name: 'publish', broker: config.broker, logger: log, setup: setupPublish, onReconnect: () => metrics.reconnected('publish') })
  // The consumer's deliveries go to the pipeline built below; nothing arrives before the connections start.
  // A closed channel or a cancelled consumer is restored in place: the connection and its other work stay.
  const consumer = new Consumer({
    queue,
    prefetch: cfg.concurrency,
    gate,
    logger: log,
    onDelivery: (d) => pipeline(d),
    redeclare,
    backoff: { initialMs: config.broker.reconnectInitialMs, maxMs: config.broker.reconnectMaxMs },
    // Consuming again after the broker took the consumer away may be the first time it consumes at all.
    onRecovered: () => { if (consumer.consuming) startup.consuming(metrics) },
  })
  // Held to one unacked delivery (careful mode, the breaker's probe): a consumer of prefetch one takes over.
  const oneAtATime = new OneAtATime((n) => consumer.setPrefetch(n === 1 ? 1 : cfg.concurrency))
  const metrics = createDequeuerMetrics(deps.registry, cfg.service, Math.max(cfg.downstreamTimeoutMs, cfg.batch.timeoutMs) / 1000, {
    inflight: () => inflight.count,
    prefetch: () => (oneAtATime.on ? 1 : cfg.concurrency),
    consuming: () => consumer.consuming,
    consumeUp: () => consumeConn.up,
    publishUp: () => publishConn.up,
  })
  // 2. The service: health gating, the breaker and its probing, the call strategy.
  const health = cfg.health.url === null
    ? null
    : new HealthMonitor({ ...cfg.health, url: cfg.health.url }, log, metrics, {
      onHealthy: () => gate.resume('unhealthy'),
      onUnhealthy: () => gate.pause('unhealthy'),
      onGiveUp: (why) => startup.fatal(new Error(`the service never became healthy: ${why}`)),
    })
  if (health !== null) gate.pause('unhealthy')
  const breaker = new Breaker(cfg.breaker, {
    gate,
    probeOneAtATime: (on) => oneAtATime.set('probe', on),
    healthCheck: health === null ? null : () => health.check(),
    onState: (state) => {
      metrics.breaker(state)
      log.warn({ state }, 'circuit breaker changed state')
    },
  })
  streams = new StreamChannel({ thresholdBytes: cfg.streamThresholdBytes, retryStatuses: cfg.retryStatuses }, log, metrics)
  const strategy = await callStrategy(cfg, breaker, metrics, log, streams)
  // 3. The message path: careful mode after a crash, then prepare → call → settle.
  const isolation = new Isolation({
    pauseConsuming: cfg.queueType === 'quorum' ? pauseWhileSuspectRuns(gate, consumer) : null,
    oneAtATime: (on) => oneAtATime.set('careful', on),
    whenBusyAtMost: (n) => inflight.whenAtMost(n),
    busy: () => inflight.count,
    acksReceived: () => consumer.acksReceived(),
    onStragglers: (busy) => log.warn({ busy }, 'deliveries kept arriving beside a suspect; it runs beside them'),
    onChange: (careful) => log.warn({ careful }, careful ? 'a message may have crashed a dequeuer: running suspects alone' : 'back to full prefetch'),
    quietMs: CAREFUL_QUIET_MS,
  })
  const control = new ControlHeaders(cfg.messageKey, everyMinute(() => log.warn('ignored relayq control headers without a valid signature (RELAYQ_MESSAGE_KEY): a publisher other than relayq, or a key that differs between dequeuers')))
  const answers = cfg.idempotency === null ? null : new RecordedAnswers(cfg.idempotency.redisUrl, cfg.idempotency.ttlSeconds, log)
  const pipeline = createPipeline({
    answers,
    cfg, logger: log, debug: log.isLevelEnabled('debug'), metrics, publisher, gate, control, inflight, queue, strategy, isolation,
    holding: () => isolation.holding,
    deliveredOneAtATime: (d) => consumer.deliveredOneAtATime(d),
    expectSuspect: () => isolation.expect(),
    unroutableWaits: new UnroutableWaits(cfg.concurrency),
    tracing: deps.tracing == null ? null : new DequeuerTracing(deps.tracing, queue, cfg.downstreamUrl),
  })
  // 4. The broker: topology and consuming on one connection, publishing on the other.
  const reconcile = (): void => {
    void consumer.reconcile().then(() => { if (consumer.consuming) startup.consuming(metrics) })
  }
  gate.subscribe(reconcile)
  async function setupConsume (conn: ChannelModel): Promise<void> {
    await redeclare(conn)
    await consumer.attach(conn)
    gate.resume('starting')
    gate.resume('broker')
    reconcile()
  }
  consumeConn.on('down', () => {
    consumer.detach()
    gate.pause('broker')
  })
  // Each connection comes back on its own; whichever is up first tells the other to try now, not after its backoff.
  publishConn.on('up', () => {
    gate.resume('publisher')
    consumeConn.retryNow()
  })
  consumeConn.on('up', () => publishConn.retryNow())
  // A publish that timed out while the broker blocks the connection may still go out: wait, do not retry it.
  publishConn.on('blocked', () => publisher.setBlocked(true))
  publishConn.on('unblocked', () => publisher.setBlocked(false))
  publishConn.on('down', () => {
    publisher.detach()
    streams?.detach()
    gate.pause('publisher')
  })
  consumeConn.on('fatal', (err) => startup.fatal(err))
  publishConn.on('fatal', (err) => startup.fatal(err))
  // 5. The admin port.
  const drain = once(async () => {
    await drainDequeuer(gate, consumer, inflight, log, config.shutdownTimeoutMs)
    deps.onDrained?.()
  })
  const admin: Server = createAdminServer({
    metrics: async () => ({ contentType: deps.registry?.contentType ?? 'text/plain', body: deps.registry === null ? '' : await deps.registry.metrics() }),
    // A short pause to run a suspect alone is not a reason to leave the endpoints.
    notReadyReason: () => ((consumer.consuming && gate.open) || (consumer.problem === null && gate.only('isolating')) ? null : `not consuming: ${consumer.problem ?? (gate.describe() || 'starting')}`),
    // A consumer the broker took away and relayq cannot restore: a restart is the remaining remedy.
    notLiveReason: () => (consumer.problemForMs() > cfg.consumerRecoveryLimitMs ? `not consuming for ${Math.round(consumer.problemForMs() / 1000)} s: ${consumer.problem ?? ''}` : null),
    started: () => true,
    drain,
  })
  const adminPort = await listen(admin, deps.adminPort ?? cfg.admin.port, cfg.admin.host, { port: 'METRICS_PORT', host: 'METRICS_HOST', logger: log })
  const dlqPoll = cfg.dlqPollIntervalMs > 0 ? setInterval(() => { void pollDeadLetterDepth(consumeConn, cfg, log, (n) => metrics.dlqDepth(n), redeclare) }, cfg.dlqPollIntervalMs) : null
  dlqPoll?.unref()

  publishConn.start()
  consumeConn.start()
  health?.start()

  return {
    adminPort,
    consuming: startup.promise,
    ready: startup.promise,
    gate,
    inflight,
    isolation,
    drain,
    // Shutdown order: (1) drain; (2) stop the timers and probes; (3) close the consumer, then its
    // connection; (4) the publisher, then its connection; (5) the service's sockets; (6) the admin port.
    close: once(async () => {
      await drain()
      if (dlqPoll !== null) clearInterval(dlqPoll)
      health?.stop()
      breaker.shutdown()
      isolation.close()
      await consumer.close()
      await consumeConn.close()
      await publisher.close()
      await publishConn.close()
      await strategy.close()
      await answers?.close()
      admin.closeAllConnections()
      await new Promise<void>((resolve) => admin.close(() => resolve()))
    }),
  }
}

/** Quorum queues: consuming pauses while a suspect runs (isolation.ts). */
function pauseWhileSuspectRuns (gate: Gate, consumer: Consumer): (on: boolean) => Promise<void> {
  return async (on) => {
    if (on) gate.pause('isolating')
    else gate.resume('isolating')
    await consumer.reconcile()
  }
}

/** One call per message, or (BATCH_ENABLED) the batch strategy. */
async function callStrategy (cfg: DequeuerConfig, breaker: Breaker, metrics: DequeuerMetrics, log: Logger, streams: StreamChannel): Promise<CallStrategy> {
  if (cfg.batch.enabled && cfg.batch.url !== null) {
    const batchCfg = { ...cfg.batch, url: cfg.batch.url }
    const size = await discoverBatchSize(batchCfg, log)
    log.info({ size, windowMs: cfg.batch.windowMs }, 'batch mode')
    return new Batcher({ breaker, metrics, connections: cfg.connections, maxReplyBytes: cfg.maxReplyBytes }, batchCfg, size)
  }
  const forwarder = new Forwarder({ origin: cfg.downstreamUrl.origin, connections: cfg.connections, maxResponseBytes: cfg.maxReplyBytes, connectTimeoutMs: Math.min(5000, cfg.downstreamTimeoutMs) })
  return new SingleCall(forwarder, breaker, metrics, streams)
}

/** The `consuming` promise: resolved by the first consume (an event, not a poll), rejected by a fatal error. */
function startupSignal (onFatal: ((err: Error) => void) | undefined): { promise: Promise<void>, consuming: (metrics: DequeuerMetrics) => void, fatal: (err: Error) => void } {
  let resolve!: () => void
  let reject!: (err: Error) => void
  let settled = false
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {})
  return {
    promise,
    consuming: (metrics) => {
      if (settled) return
      settled = true
      metrics.ready(Date.now() / 1000)
      resolve()
    },
    fatal: (err) => {
      settled = true
      reject(err)
      onFatal?.(err)
    },
  }
}

/**
 * Drain, in order: (1) stop consuming (readiness goes 503); (2) let in-flight
 * messages finish, publish their replies and ack, while deliveries that were
 * already on their way are given back uncounted; (3) give up after the
 * shutdown timeout: whatever is still unacked returns to the queue when the
 * channel closes.
 */
async function drainDequeuer (gate: Gate, consumer: Consumer, inflight: Inflight, log: Logger, timeoutMs: number): Promise<void> {
  gate.pause('draining')
  await consumer.reconcile()
  log.info({ inflight: inflight.count }, 'draining')
  let timer: NodeJS.Timeout | null = null
  await Promise.race([inflight.whenAtMost(0), new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
  if (timer !== null) clearTimeout(timer)
  if (inflight.count > 0) log.warn({ inflight: inflight.count }, 'drain timeout: unfinished messages go back to the queue')
  log.info('drained')
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

/** Runs `fn` at most once a minute (a warning that a flood of messages could repeat). */
function everyMinute (fn: () => void): () => void {
  let last = -Infinity
  return () => {
    const now = Date.now()
    if (now - last < 60000) return
    last = now
    fn()
  }
}

function once (fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null
  return () => (p ??= fn())
}
