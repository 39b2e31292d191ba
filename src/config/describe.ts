// The effective configuration for the start-up log line: each variable the
// mode reads, as given or defaulted, leaving out the ones another setting
// makes unused (the RABBITMQ_HOST family when RABBITMQ_URL is set), with every
// credential redacted, defaults included: a default password is still one.
import { SPEC, type VarSpec } from './spec'
import type { Env } from './load'
import { isServiceLink } from './service-links'
import type { Mode } from './types'

const REDACTED = '[redacted]'

export function describeConfig (env: Env, mode: Mode | 'dlq'): Record<string, string> {
  const out: Record<string, string> = {}
  for (const spec of Object.values(SPEC) as VarSpec[]) {
    if (spec.scope !== 'all' && spec.scope !== mode) continue
    if (unused(spec.name, env)) continue
    const fromFile = spec.file === true && given(env, `${spec.name}_FILE`)
    if (fromFile) {
      // The file's content is not read again here; every variable that may come from a file is a secret.
      out[spec.name] = REDACTED
      continue
    }
    const raw = given(env, spec.name) ? env[spec.name]!.trim() : spec.default
    if (raw === undefined) continue
    if (spec.name.endsWith('_URL')) out[spec.name] = raw.split(',').map((u) => redactUrl(u.trim())).join(',')
    else out[spec.name] = spec.secret === true ? REDACTED : raw
  }
  return out
}

/** A URL with its password and every query value replaced; the rest (scheme, user, host, path) helps an operator. */
export function redactUrl (raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return REDACTED
  }
  const auth = url.username === '' && url.password === '' ? '' : `${url.username}${url.password === '' ? '' : `:${REDACTED}`}@`
  const query = url.search === '' ? '' : '?' + url.search.slice(1).split('&').map((pair) => `${pair.split('=')[0]}=${REDACTED}`).join('&')
  return `${url.protocol}//${auth}${url.host}${url.pathname}${query}`
}

function given (env: Env, name: string): boolean {
  const v = env[name]
  return v !== undefined && v !== '' && !isServiceLink(name, v)
}

const BROKER_FAMILY = new Set(['RABBITMQ_HOST', 'RABBITMQ_PORT', 'RABBITMQ_USER', 'RABBITMQ_PASSWORD', 'RABBITMQ_VHOST', 'RABBITMQ_TLS'])
const REDIS_FAMILY = new Set(['REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_DB'])
const BATCH_ONLY = new Set(['BATCH_SIZE', 'BATCH_WINDOW_MS', 'BATCH_TIMEOUT_MS'])

/** Variables that the values of others make irrelevant (the same rules as the loader's). */
function unused (name: string, env: Env): boolean {
  if (BROKER_FAMILY.has(name)) return given(env, 'RABBITMQ_URL') || given(env, 'RABBITMQ_URL_FILE')
  if (REDIS_FAMILY.has(name)) return given(env, 'REDIS_URL') || given(env, 'REDIS_URL_FILE') || (name !== 'REDIS_HOST' && !given(env, 'REDIS_HOST'))
  if (BATCH_ONLY.has(name)) return !isTrue(env.BATCH_MODE)
  return false
}

function isTrue (raw: string | undefined): boolean {
  try {
    return raw !== undefined && SPEC.BATCH_MODE.parse(raw)
  } catch {
    return false
  }
}
