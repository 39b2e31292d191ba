// ENQUEUER_WORKERS > 1: the primary forks that many enqueuer workers sharing
// the port (each with its own broker connection), restarts a worker that dies
// (with backoff), forwards SIGTERM so each drains, and serves the sum of all
// workers' metrics on every scrape.
import cluster, { type Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { AggregatorRegistry, type Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config } from '../config/types'
import type { Server } from 'node:http'
import { createAdminServer } from '../http/admin'
import { listen } from '../http/server'
import { serveJobStore } from '../enqueuer/jobs/cluster-store'
import { memoryJobStore } from '../enqueuer/jobs/default-store'
import { serveIdempotencyStore } from '../enqueuer/idempotency/cluster-store'
import { MemoryIdempotencyStore } from '../enqueuer/idempotency/memory-store'

interface MetricsRequest { readonly relayq: 'metrics', readonly id: number }
interface InstanceRequest { readonly relayq: 'instance' }
interface InstanceResponse { readonly relayq: 'instance-result', readonly id: string }
interface MetricsResponse { readonly relayq: 'metrics-result', readonly id: number, readonly body?: string, readonly error?: string }

const RESTART_BACKOFF_MAX_MS = 30000

export interface PrimaryDeps {
  /** Called once a drain (POST /drain on the admin port) has stopped every worker: main.ts exits 0. */
  readonly onDrained?: () => void
}

export interface RunningPrimary {
  /** Resolves once the first worker listens. */
  readonly ready: Promise<void>
  /** Stops every worker (each drains on its SIGTERM), as POST /drain on the admin port does. */
  readonly drain: () => Promise<void>
  /** Drains, then closes the admin port. Signals are main.ts's. */
  readonly close: () => Promise<void>
}

export async function runPrimary (config: Config, logger: Logger, deps: PrimaryDeps = {}): Promise<RunningPrimary> {
  const cfg = config.enqueuer!
  const aggregator = new AggregatorRegistry()
  // The workers share one in-memory job store, so they share its results queue too; each asks for this id.
  const instanceId = randomBytes(6).toString('hex')
  // Without Redis, the workers share one in-memory job store, kept here.
  const jobStore = cfg.async.enabled && cfg.async.redisUrl === null ? memoryJobStore(cfg.async) : null
  const idempotencyStore = cfg.idempotency.enabled && cfg.idempotency.redisUrl === null ? new MemoryIdempotencyStore() : null
  const aggregate = async (): Promise<string> => aggregator.clusterMetrics()
  let stopping = false
  const restarts = new Map<number, number>()

  const fork = (slot: number): void => {
    const worker = cluster.fork()
    if (jobStore !== null) serveJobStore(worker, jobStore)
    if (idempotencyStore !== null) serveIdempotencyStore(worker, idempotencyStore)
    worker.on('message', (msg: MetricsRequest | InstanceRequest) => {
      if (msg?.relayq === 'instance') {
        worker.send({ relayq: 'instance-result', id: instanceId } satisfies InstanceResponse)
        return
      }
      if (msg?.relayq !== 'metrics') return
      aggregate().then(
        (body) => worker.send({ relayq: 'metrics-result', id: msg.id, body } satisfies MetricsResponse),
        (err: Error) => worker.send({ relayq: 'metrics-result', id: msg.id, error: err.message } satisfies MetricsResponse),
      )
    })
    worker.on('exit', (code, signal) => {
      if (stopping) return
      const n = (restarts.get(slot) ?? 0) + 1
      restarts.set(slot, n)
      const delay = Math.min(RESTART_BACKOFF_MAX_MS, 100 * 2 ** Math.min(n, 10))
      logger.error({ slot, code, signal, restartInMs: delay }, 'enqueuer worker died; restarting')
      setTimeout(() => fork(slot), delay)
    })
    worker.on('listening', () => restarts.set(slot, 0))
  }
  for (let i = 0; i < cfg.workers; i++) fork(i)

  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
  let drained: Promise<void> | null = null
  const drainAll = (): Promise<void> => (drained ??= (async () => {
    stopping = true
    await Promise.all(workers().map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) return resolve()
      w.once('exit', () => resolve())
      w.process.kill('SIGTERM')
    })))
    deps.onDrained?.()
  })())

  const ready = new Promise<void>((resolve) => cluster.once('listening', () => resolve()))
  let admin: Server | null = null
  if (cfg.admin !== null) {
    admin = createAdminServer({
      metrics: async () => ({ contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE, body: await aggregate() }),
      notReadyReason: () => (stopping ? 'draining' : workers().length === 0 ? 'no worker running' : null),
      drain: drainAll,
    })
    await listen(admin, cfg.admin.port, cfg.admin.host, { port: 'ADMIN_PORT', host: 'ADMIN_HOST', logger })
  }
  return {
    ready,
    drain: drainAll,
    close: async () => {
      logger.info('shutting down workers')
      await drainAll()
      const server = admin
      if (server !== null) {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    },
  }
}

/** In a worker: the primary's instance id, which names the results queue its workers share (asked over IPC, not the environment). */
export function instanceIdFromPrimary (timeoutMs = 10000): Promise<string> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: InstanceResponse): void => {
      if (msg?.relayq !== 'instance-result') return
      clearTimeout(timer)
      process.off('message', onMessage)
      resolve(msg.id)
    }
    const timer = setTimeout(() => {
      process.off('message', onMessage)
      reject(new Error('the cluster primary did not send its instance id'))
    }, timeoutMs)
    process.on('message', onMessage)
    process.send?.({ relayq: 'instance' } satisfies InstanceRequest)
  })
}

/** In a worker: the AggregatorRegistry must exist here too, or the primary's scrape waits 5 s for an answer. */
export function setupWorkerMetrics (_registry: Registry): void {
  // prom-client collects from the global registry in each worker; ours is passed in explicitly.
  AggregatorRegistry.setRegistries([_registry])
  void new AggregatorRegistry()
}

let nextId = 0
const waiting = new Map<number, (r: MetricsResponse) => void>()

/** In a worker: /metrics on the shared port answers with every worker's metrics summed by the primary. */
export function workerMetricsText (): Promise<{ contentType: string, body: string }> {
  if (waiting.size === 0) process.on('message', onPrimaryMessage)
  const id = ++nextId
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id)
      reject(new Error('the cluster primary did not answer'))
    }, 10000)
    waiting.set(id, (r) => {
      clearTimeout(timer)
      if (r.body !== undefined) resolve({ contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE, body: r.body })
      else reject(new Error(r.error ?? 'metrics unavailable'))
    })
    process.send?.({ relayq: 'metrics', id } satisfies MetricsRequest)
  })
}

function onPrimaryMessage (msg: MetricsResponse): void {
  if (msg?.relayq !== 'metrics-result') return
  const done = waiting.get(msg.id)
  waiting.delete(msg.id)
  done?.(msg)
  if (waiting.size === 0) process.off('message', onPrimaryMessage)
}
