// `relayq declare --service NAME`: creates a service's queues (request queue,
// dead-letter queue and binding, retry delay queues) before its first pod
// runs, with the dequeuer's own variables, so a Helm hook, an init Job or an
// operator can make a service reachable while it is at zero replicas
// (ENQUEUER_NO_CONSUMERS=wait needs the queue to exist). Idempotent: queues
// that already exist with the same arguments are left as they are.
// Exit codes, as the dlq tool: 0 done, 1 failed (broker, or a queue exists
// with other arguments, explained), 2 bad usage or configuration.
import { parseArgs } from 'node:util'
import { connectOnce } from '../amqp/connection'
import { deadLetterQueue, requestQueue, requestQueueArgs, retryQueue, declareServiceTopology, type TopologySettings } from '../amqp/topology'
import { ConfigError, loadDeclareToolConfig, type Env } from '../config/load'
import { isValidServiceName } from '../config/parsers'
import { describeUnknown, unknownVariables } from '../config/unknown'
import { retryDelays } from '../dequeuer/outcome'

const USAGE = `usage: relayq declare [--service NAME] [--json]

Creates {NAME}_requests, its dead-letter queue and its retry queues, as a
dequeuer of NAME would (DEQUEUER_QUEUE_TYPE, DEQUEUER_DECLARE_QUEUES,
DEQUEUER_DELIVERY_LIMIT, MESSAGE_TTL_MS, DEQUEUER_MAX_LENGTH,
DEQUEUER_MAX_ATTEMPTS, DEQUEUER_RETRY_DELAY_MS, DEQUEUER_RETRY_MAX_DELAY_MS).
Run it again at will: it changes nothing that already matches, and fails
(exit 1) naming the argument when a queue exists with other arguments.

--service defaults to SERVICE_NAME. The broker comes from RABBITMQ_URL (or RABBITMQ_HOST, ...).
exit codes: 0 done, 1 failed, 2 bad usage or configuration.
`

export async function runDeclareTool (argv: readonly string[], env: Env, out: (s: string) => void = (s) => process.stdout.write(s + '\n'), err: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<number> {
  if (argv.some((a) => a === '--help' || a === '-h')) {
    out(USAGE)
    return 0
  }
  let service: string
  let json: boolean
  try {
    ({ service, json } = parse(argv, env.SERVICE_NAME))
  } catch (e) {
    err(`relayq declare: ${(e as Error).message}\n\n${USAGE}`)
    return 2
  }
  for (const u of unknownVariables(env)) err(`relayq declare: warning: ${describeUnknown(u)}`)
  let config
  try {
    config = loadDeclareToolConfig(env)
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`relayq declare: ${e.message}`)
      return 2
    }
    throw e
  }
  const settings: TopologySettings = { service, ...config }
  const delays = retryDelays({ ...config, retryStatuses: new Set() })
  let conn
  try {
    conn = await connectOnce(config.broker, 'declare')
  } catch (e) {
    err(`relayq declare: ${(e as Error).message}`)
    return 1
  }
  try {
    await declareServiceTopology(() => conn.createChannel(), settings, delays)
  } catch (e) {
    err(`relayq declare: ${(e as Error).message}`)
    if (json) out(JSON.stringify({ service, declared: false, error: (e as Error).message }))
    return 1
  } finally {
    await conn.close().catch(() => {})
  }
  const queues = [requestQueue(service), deadLetterQueue(service), ...delays.map((d) => retryQueue(service, d))]
  if (json) out(JSON.stringify({ service, declared: true, queues, queueType: config.queueType, arguments: config.declareQueues ? requestQueueArgs(settings) : null }))
  else out(`declared ${queues.join(', ')} (${config.queueType})`)
  return 0
}

function parse (argv: readonly string[], defaultService: string | undefined): { service: string, json: boolean } {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: false,
    options: { service: { type: 'string' }, json: { type: 'boolean', default: false } },
  })
  const service = values.service ?? (defaultService === '' ? undefined : defaultService)
  if (service === undefined) throw new Error('--service NAME is required (or SERVICE_NAME)')
  if (!isValidServiceName(service)) {
    throw new Error(`${values.service === undefined ? 'SERVICE_NAME' : '--service'} "${service}" is not a valid service name (letters, digits, _ . -, at most 100, not starting with amq.)`)
  }
  return { service, json: values.json === true }
}
