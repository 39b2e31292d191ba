// Parsers turn one raw env string into a typed value or throw a message that
// the loader prefixes with the variable's name. They never fall back to a
// default on bad input: a typo must stop start-up, not change behaviour.
import { isIP } from 'node:net'

export type Parser<T> = (raw: string) => T

export class ParseError extends Error {}

export const str: Parser<string> = (raw) => raw

/** A shared secret key: at least 32 characters, so it cannot be guessed. */
export const secretKey: Parser<string> = (raw) => {
  if (raw.length < 32) throw new ParseError('must be at least 32 characters')
  return raw
}

export function int (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ParseError(`expected an integer, got "${raw}"`)
    const n = Number(raw.trim())
    if (n < min || n > max) throw new ParseError(`expected an integer from ${min} to ${max}, got ${n}`)
    return n
  }
}

export function num (min: number, max = Number.MAX_VALUE): Parser<number> {
  return (raw) => {
    const n = Number(raw.trim())
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ParseError(`expected a number, got "${raw}"`)
    if (n < min || n > max) throw new ParseError(`expected a number from ${min} to ${max}, got ${n}`)
    return n
  }
}

export const bool: Parser<boolean> = (raw) => {
  const v = raw.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off'].includes(v)) return false
  throw new ParseError(`expected true or false, got "${raw}"`)
}

export function oneOf<T extends string> (...choices: T[]): Parser<T> {
  return (raw) => {
    const v = raw.trim().toLowerCase()
    if ((choices as string[]).includes(v)) return v as T
    throw new ParseError(`expected one of ${choices.join(', ')}, got "${raw}"`)
  }
}

export function list<T> (item: Parser<T>): Parser<T[]> {
  return (raw) => raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map(item)
}

export const port: Parser<number> = int(0, 65535)

export function httpUrl (raw: string): URL {
  const v = raw.trim()
  // The value as given (`localhost:8080` parses as the scheme "localhost:"), credentials hidden, with the likely fix.
  const shown = v.replace(/^([^/@]*\/\/)?[^/@]*@/, '$1[redacted]@')
  const hint = v.includes('://') ? '' : ` (did you mean http://${shown}?)`
  let url: URL
  try {
    url = new URL(v)
  } catch {
    throw new ParseError(`expected an absolute http:// or https:// URL, got "${shown}"${hint}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ParseError(`expected an http:// or https:// URL, got "${shown}"${hint}`)
  }
  if (url.hash !== '') throw new ParseError('a URL fragment (#...) is not allowed')
  return url
}

export const status: Parser<number> = int(100, 599)

export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/

export function isValidServiceName (name: string): boolean {
  return SERVICE_NAME_PATTERN.test(name) && !name.startsWith('amq.')
}

export const serviceName: Parser<string> = (raw) => {
  const v = raw.trim()
  if (!isValidServiceName(v)) {
    throw new ParseError(`"${raw}" is not a valid service name (letters, digits, _ . -, at most 100, not starting with amq.)`)
  }
  return v
}

export const hostname: Parser<string> = (raw) => {
  const v = raw.trim()
  if (v === '' || /[\s/]/.test(v)) throw new ParseError(`expected a host name or address, got "${raw}"`)
  return v
}

/** An IP address or a CIDR range, returned as `address/prefix`. */
export const cidr: Parser<string> = (raw) => {
  const v = raw.trim()
  const slash = v.indexOf('/')
  const address = slash === -1 ? v : v.slice(0, slash)
  const family = isIP(address)
  if (family === 0) throw new ParseError(`expected an IP address or CIDR range, got "${raw}"`)
  const max = family === 4 ? 32 : 128
  const prefix = slash === -1 ? String(max) : v.slice(slash + 1)
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) throw new ParseError(`expected a prefix length from 0 to ${max} in "${raw}"`)
  return `${address}/${Number(prefix)}`
}

/** OTel's `key=value,key2=value2` lists (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS): values percent-decoded. */
export const keyValues: Parser<Record<string, string>> = (raw) => {
  const out: Record<string, string> = {}
  for (const item of raw.split(',')) {
    if (item.trim() === '') continue
    const eq = item.indexOf('=')
    const key = eq <= 0 ? '' : item.slice(0, eq).trim()
    if (key === '' || !/^[\x21-\x7e]+$/.test(key)) throw new ParseError(`expected key=value pairs separated by commas, got "${item.trim().slice(0, 40)}"`)
    try {
      out[key] = decodeURIComponent(item.slice(eq + 1).trim())
    } catch {
      throw new ParseError(`the value of ${key} is not valid percent-encoding`)
    }
  }
  return out
}
