// Variables that look like relayq's but are not: a typo such as
// ENQUEUER_REPLYTIMEOUT=5 would otherwise be ignored without a word, and the
// default would quietly win. Only names with one of relayq's own prefixes are
// checked: SERVICE_NAME, LOG_LEVEL and the other ProxyMQ names without a
// prefix share the environment with everything else in the container.
import { SPEC } from './spec'
import type { Env } from './load'

const PREFIXES = ['RELAYQ_', 'ENQUEUER_', 'DEQUEUER_', 'RABBITMQ_', 'ASYNC_', 'REDIS_', 'CIRCUIT_BREAKER_', 'HEALTH_CHECK_', 'BATCH_', 'DLQ_', 'DOWNSTREAM_']

// Kubernetes service links: a Service named `rabbitmq` or `redis` puts
// RABBITMQ_SERVICE_HOST, RABBITMQ_PORT_5672_TCP... into every pod of its namespace.
const SERVICE_LINK = /_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?$/

// Read by relayq's test and build scripts, not by relayq.
const OWN = /^RELAYQ_(TEST\w*|BUILD_\w+|SOAK_\w+|FUZZ_\w+)$/

const KNOWN: readonly string[] = Object.values(SPEC).flatMap((s) => ('file' in s && s.file === true ? [s.name, `${s.name}_FILE`] : [s.name]))
const KNOWN_SET = new Set(KNOWN)

export interface UnknownVariable {
  readonly variable: string
  /** The closest known name, when one is close enough to be a likely typo. */
  readonly closest: string | null
}

export function unknownVariables (env: Env): UnknownVariable[] {
  const out: UnknownVariable[] = []
  for (const name of Object.keys(env).sort()) {
    if (KNOWN_SET.has(name) || !PREFIXES.some((p) => name.startsWith(p))) continue
    if (SERVICE_LINK.test(name) || OWN.test(name)) continue
    out.push({ variable: name, closest: closest(name) })
  }
  return out
}

export function describeUnknown (u: UnknownVariable): string {
  return `${u.variable} is not a relayq variable and is ignored${u.closest === null ? '' : `; did you mean ${u.closest}?`}`
}

function closest (name: string): string | null {
  let best: string | null = null
  let bestDistance = Infinity
  for (const known of KNOWN) {
    const d = distance(name, known)
    if (d < bestDistance) {
      best = known
      bestDistance = d
    }
  }
  // A quarter of the name: ENQUEUER_REPLYTIMEOUT -> ENQUEUER_REPLY_TIMEOUT is a typo; RELAYQ_COLOR -> RELAYQ_MODE is not.
  return bestDistance <= Math.max(2, Math.floor(name.length / 4)) ? best : null
}

/** Levenshtein distance (names are short: the quadratic table is fine). */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}
