// The entry point: read the configuration once, make the logger, start one
// mode (or the cluster primary, or the dlq tool), and own the process: only
// this file exits, and only after a drain.
import cluster from 'node:cluster'
import { describeConfig } from './config/describe'
import { ConfigError, loadConfig } from './config/load'
import type { Config } from './config/types'
import { serviceLinkNotices } from './config/service-links'
import { SPEC } from './config/spec'
import { describeUnknown, unknownVariables } from './config/unknown'
import { startDequeuer } from './dequeuer'
import { startEnqueuer } from './enqueuer'
import { ListenError } from './http/server'
import { createLogger, type Logger } from './log'
import { createRegistry } from './metrics/registry'
import { AMQPLIB_VERSION, VERSION } from './version'
import { instanceIdFromPrimary, runPrimary, setupWorkerMetrics, workerMetricsText } from './cluster/primary'
import { runDlqTool } from './dlq/cli'
import { runDeclareTool } from './declare/cli'
import { createTracingMetrics } from './metrics/tracing'
import { createTracing } from './tracing/tracing'

const EX_CONFIG = 78
// A cluster worker joins the shared port once its broker connection is up; a
// broker that stays away this long should not keep the port closed for good.
const WORKER_LISTEN_WAIT_MS = 10_000

const USAGE = `relayq ${VERSION}: HTTP over RabbitMQ

usage:
  RELAYQ_MODE=enqueuer node relayq.js     the HTTP edge: publish each request to {service}_requests, answer with the reply
  RELAYQ_MODE=dequeuer node relayq.js     the sidecar: consume SERVICE_NAME's queue, forward to DOWNSTREAM_URL, reply
  node relayq.js dlq <command> ...        the dead-letter tool (stats, list, peek, replay, purge, export, import);
                                          \`relayq dlq --help\` for its options
  node relayq.js declare --service NAME   create a service's queues before its first pod runs (scale to zero)
  node relayq.js --help | --version

Every setting is an environment variable: see the configuration table in
docs/configuration.md. Invalid settings stop start-up with status 78, each named.
`

/** Arguments that ask for text, not a process: answered before any configuration is read. */
function informational (arg: string | undefined): string | null {
  if (arg === '--help' || arg === '-h' || arg === 'help') return USAGE
  if (arg === '--version' || arg === '-v' || arg === 'version') return `relayq ${VERSION}\n`
  return null
}

async function main (): Promise<void> {
  const text = informational(process.argv[2])
  if (text !== null) {
    process.stdout.write(text)
    return
  }
  if (process.argv[2] === 'dlq') {
    process.exitCode = await runDlqTool(process.argv.slice(3), process.env)
    return
  }
  if (process.argv[2] === 'declare') {
    process.exitCode = await runDeclareTool(process.argv.slice(3), process.env)
    return
  }
  const unknown = [...unknownVariables(process.env).map(describeUnknown), ...serviceLinkNotices(process.env, Object.keys(SPEC))]
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    const logger = createLogger('error')
    logger.error({ problems: err.problems, ...(unknown.length > 0 ? { unknown } : {}) }, 'invalid configuration')
    process.stderr.write(`relayq: ${err.message}\n${unknown.map((u) => `  note: ${u}\n`).join('')}`)
    process.exit(EX_CONFIG)
  }
  const logger = createLogger(config.logLevel, { mode: config.mode })
  if (cluster.isPrimary) for (const u of unknown) logger.warn(u)
  const owner = new ProcessOwner(logger)
  if (config.mode === 'enqueuer' && config.enqueuer !== null && config.enqueuer.workers > 1 && cluster.isPrimary) {
    logger.info({ version: VERSION, config: describeConfig(process.env, config.mode) }, 'starting relayq cluster primary')
    owner.own(await startOrExit(logger, () => runPrimary(config, logger, { onDrained: () => owner.stop('drained') })))
    return
  }
  if (cluster.isPrimary) logger.info({ version: VERSION, node: process.version, amqplib: AMQPLIB_VERSION, config: describeConfig(process.env, config.mode) }, 'starting relayq')
  if (config.broker.tls.insecure) logger.warn('RABBITMQ_TLS_INSECURE=true: the broker certificate is NOT verified')
  const started = Date.now()
  const running = await startOrExit(logger, () => startMode(config, logger, owner))
  owner.own(running)
  running.ready.then(() => logger.info({ ms: Date.now() - started }, 'ready'), (err: Error) => owner.fatal(err))
}

/** A port that cannot be had stops start-up with one line naming its variable. */
async function startOrExit<T> (logger: Logger, start: () => Promise<T>): Promise<T> {
  try {
    return await start()
  } catch (err) {
    if (!(err instanceof ListenError)) throw err
    logger.fatal({ variable: err.names.port, address: err.address, code: err.code }, err.message)
    process.stderr.write(`relayq: ${err.message}\n`)
    process.exit(1)
  }
}

/** The shape every mode's handle has (the enqueuer, the dequeuer and the cluster primary). */
interface Running {
  readonly ready: Promise<void>
  readonly drain: () => Promise<void>
  readonly close: () => Promise<void>
}

async function startMode (config: Config, logger: Logger, owner: ProcessOwner): Promise<Running> {
  const registry = config.metricsEnabled ? createRegistry(config.mode) : null
  const isWorker = cluster.isWorker
  if (isWorker && registry !== null) setupWorkerMetrics(registry)
  const onDrained = (): void => owner.stop('drained')
  const tracing = createTracing(config.tracing, config.mode, createTracingMetrics(registry), logger)
  const running = config.mode === 'enqueuer'
    ? await startEnqueuer(config, { logger, registry, onDrained, tracing, ...(isWorker ? { metricsText: workerMetricsText, instanceId: await instanceIdFromPrimary(), listenAfterConnectMs: WORKER_LISTEN_WAIT_MS } : {}) })
    : await startDequeuer(config, { logger, registry, onDrained, tracing, onFatal: (err) => owner.fatal(err) })
  if (tracing === null) return running
  // The last spans go out after the mode has closed (bounded: a dead collector does not hold the exit).
  return { ready: running.ready, drain: running.drain, close: async () => { await running.close(); await tracing.shutdown() } }
}

/**
 * The one owner of signals and of process.exit. SIGTERM, SIGINT or a finished
 * drain (POST /drain) close the running mode and exit 0; a second signal exits
 * at once with 1; a fatal error exits 1.
 */
class ProcessOwner {
  private running: Running | null = null
  private stopping: string | null = null

  constructor (private readonly logger: Logger) {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.stopping !== null) {
        logger.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      }
      this.stop(signal)
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  }

  own (running: Running): void {
    this.running = running
    // A stop asked for while the mode was still starting runs now.
    if (this.stopping !== null) this.close()
  }

  stop (reason: string): void {
    if (this.stopping !== null) return
    this.stopping = reason
    if (this.running !== null) this.close()
  }

  fatal (err: Error): void {
    this.logger.fatal({ err: err.message }, 'cannot continue')
    process.exit(1)
  }

  private close (): void {
    this.logger.info({ reason: this.stopping }, 'shutting down')
    this.running!.close().then(() => {
      this.logger.info('stopped')
      process.exit(0)
    }, (err: Error) => {
      this.logger.error({ err: err.message }, 'error while shutting down')
      process.exit(1)
    })
  }
}

main().catch((err: Error) => {
  process.stderr.write(`relayq: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
