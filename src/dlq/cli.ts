// The dead-letter reprocessor: `relayq dlq <command> --service NAME [options]`,
// connecting with the same environment variables as relayq itself.
// Exit codes: 0 done, 1 failed (broker, file), 2 bad usage, 3 some messages could not be moved.
import { parseArgs } from 'node:util'
import { connectOnce } from '../amqp/connection'
import { ConfigError, loadDlqToolConfig, type Env } from '../config/load'
import { isValidServiceName } from '../config/parsers'
import { describeUnknown, unknownVariables } from '../config/unknown'
import * as commands from './commands'
import { KNOWN_REASONS } from './inspect'

const USAGE = `usage: relayq dlq <command> [--service NAME] [options]

--service defaults to SERVICE_NAME; its dead-letter queue is {NAME}_requests.dlq.

commands:
  stats                      depth, oldest age and counts by reason
  list   [--limit N] [--reason R] [--id ID]          one line per message (the queue is left as it was)
  peek   [--limit N] [--reason R] [--id ID] [--body] [--show-secrets]   full details
  replay [--limit N] [--reason R] [--id ID] [--to QUEUE]   republish to {service}_requests, attempts reset
  purge  --yes               delete every message of the dead-letter queue
  export --file F            write every message as JSON lines (bodies in base64); the queue is left as it was
  import --file F [--to QUEUE]   publish an export back (to the dead-letter queue by default)

options: --json for machine-readable output. The broker comes from RABBITMQ_URL (or RABBITMQ_HOST, ...).
reasons: ${KNOWN_REASONS.join(', ')}
`

class UsageError extends Error {}

export async function runDlqTool (argv: readonly string[], env: Env, out: (s: string) => void = (s) => process.stdout.write(s + '\n'), err: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<number> {
  if (argv.some((a) => a === '--help' || a === '-h') || argv[0] === 'help') {
    out(USAGE)
    return 0
  }
  let parsed
  try {
    parsed = parse(argv, env.SERVICE_NAME)
  } catch (e) {
    err(`${(e as Error).message}\n\n${USAGE}`)
    return 2
  }
  for (const u of unknownVariables(env)) err(`relayq dlq: warning: ${describeUnknown(u)}`)
  let config
  try {
    config = loadDlqToolConfig(env)
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`relayq dlq: ${e.message}`)
      return 2
    }
    throw e
  }
  let conn
  try {
    conn = await connectOnce(config.broker, 'dlq')
  } catch (e) {
    err(`relayq dlq: ${(e as Error).message}`)
    return 1
  }
  try {
    return await run(parsed, { conn, service: parsed.service, out }, out)
  } catch (e) {
    err(`relayq dlq ${parsed.command}: ${(e as Error).message}`)
    return e instanceof UsageError ? 2 : 1
  } finally {
    await conn.close().catch(() => {})
  }
}

interface Parsed {
  readonly command: string
  readonly service: string
  readonly json: boolean
  readonly selection: commands.Selection
  readonly body: boolean
  readonly showSecrets: boolean
  readonly to: string | null
  readonly file: string | null
  readonly yes: boolean
}

function parse (argv: readonly string[], defaultService: string | undefined): Parsed {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      service: { type: 'string' },
      json: { type: 'boolean', default: false },
      limit: { type: 'string' },
      id: { type: 'string' },
      reason: { type: 'string' },
      body: { type: 'boolean', default: false },
      'show-secrets': { type: 'boolean', default: false },
      to: { type: 'string' },
      file: { type: 'string' },
      yes: { type: 'boolean', default: false },
    },
  })
  const command = positionals[0]
  if (command === undefined) throw new UsageError('a command is required')
  if (!['stats', 'list', 'peek', 'replay', 'purge', 'export', 'import'].includes(command)) throw new UsageError(`unknown command "${command}"`)
  const service = values.service ?? (defaultService === '' ? undefined : defaultService)
  if (service === undefined) throw new UsageError('--service NAME is required (or SERVICE_NAME)')
  if (!isValidServiceName(service)) {
    throw new UsageError(`${values.service === undefined ? 'SERVICE_NAME' : '--service'} "${service}" is not a valid service name (letters, digits, _ . -, at most 100, not starting with amq.)`)
  }
  if (values.reason !== undefined && !KNOWN_REASONS.includes(values.reason)) {
    throw new UsageError(`--reason "${values.reason}" is not a dead-letter reason; one of ${KNOWN_REASONS.join(', ')}`)
  }
  const limit = values.limit === undefined ? Infinity : Number(values.limit)
  if (!(limit > 0) || (limit !== Infinity && !Number.isInteger(limit))) throw new UsageError('--limit takes a positive integer')
  if ((command === 'export' || command === 'import') && values.file === undefined) throw new UsageError(`${command} needs --file F`)
  return {
    command,
    service,
    json: values.json === true,
    selection: { limit: command === 'peek' && values.limit === undefined ? 10 : limit, id: values.id ?? null, reason: values.reason ?? null },
    body: values.body === true,
    showSecrets: values['show-secrets'] === true,
    to: values.to ?? null,
    file: values.file ?? null,
    yes: values.yes === true,
  }
}

async function run (p: Parsed, tool: commands.Tool, out: (s: string) => void): Promise<number> {
  const print = (value: unknown, text: () => string): void => out(p.json ? JSON.stringify(value) : text())
  switch (p.command) {
    case 'stats': {
      const s = await commands.stats(tool)
      print(s, () => `${s.queue}: ${s.depth} message(s); oldest ${s.oldestAgeSeconds ?? '-'} s; by reason: ${Object.entries(s.byReason).map(([r, n]) => `${r}=${n}`).join(' ') || '-'}`)
      return 0
    }
    case 'list': {
      const rows = await commands.list(tool, p.selection)
      print(rows, () => rows.map((r) => `${r.id}  age=${r.ageSeconds ?? '-'}s  reason=${r.reason}  attempts=${r.attempts ?? '-'}  ${r.method} ${r.path}  ${r.size} B`).join('\n') || '(empty)')
      return 0
    }
    case 'peek': {
      const rows = await commands.peek(tool, p.selection, p.body, p.showSecrets)
      print(rows, () => rows.map((r) => JSON.stringify(r, null, 2)).join('\n') || '(empty)')
      return 0
    }
    case 'replay': {
      const r = await commands.replay(tool, p.selection, p.to)
      print(r, () => `replayed ${r.moved} message(s) to ${p.to ?? `${p.service}_requests`}; ${r.kept} left in the dead-letter queue; ${r.failed} failed`)
      return r.failed > 0 ? 3 : 0
    }
    case 'purge': {
      if (!p.yes) throw new UsageError('purge deletes every dead letter; add --yes to confirm')
      const n = await commands.purge(tool)
      print({ purged: n }, () => `purged ${n} message(s)`)
      return 0
    }
    case 'export': {
      const n = await commands.exportTo(tool, p.file!)
      print({ exported: n, file: p.file }, () => `exported ${n} message(s) to ${p.file}`)
      return 0
    }
    case 'import': {
      const n = await commands.importFrom(tool, p.file!, p.to)
      print({ imported: n }, () => `imported ${n} message(s)`)
      return 0
    }
    default:
      throw new UsageError(`unknown command "${p.command}"`)
  }
}
