// Parsers turn one raw env string into a typed value or throw a message that
// the loader prefixes with the variable's name. They never fall back to a
// default on bad input: a typo must stop start-up, not change behaviour.

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
  let url: URL
  try {
    url = new URL(raw.trim())
  } catch {
    throw new ParseError(`expected an absolute http:// or https:// URL, got "${raw}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ParseError(`expected an http:// or https:// URL, got "${url.protocol}"`)
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
