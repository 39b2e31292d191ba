// The pure parts: reading the Idempotency-Key header, the request's
// fingerprint, the key's scope, and `Prefer: wait`.
import { createHash } from 'node:crypto'

export const MAX_KEY_CHARS = 255

/**
 * The key of an `Idempotency-Key` value: an RFC 8941 string (`"..."`, printable
 * ASCII, `\"` and `\\` escaped), 1 to 255 characters. Null: not one. Two
 * copies of the header arrive joined by ", " and are refused too.
 */
export function parseKey (value: string): string | null {
  const v = value.trim()
  if (v.length < 3 || v[0] !== '"' || v[v.length - 1] !== '"') return null
  let out = ''
  for (let i = 1; i < v.length - 1; i++) {
    let c = v.charCodeAt(i)
    if (c === 0x5c) {
      c = v.charCodeAt(++i)
      if (i >= v.length - 1 || (c !== 0x22 && c !== 0x5c)) return null
    } else if (c === 0x22 || c < 0x20 || c > 0x7e) {
      return null
    }
    out += String.fromCharCode(c)
  }
  return out.length >= 1 && out.length <= MAX_KEY_CHARS ? out : null
}

/** What makes two requests "the same": method, path with query, and body. */
export function fingerprint (method: string, target: string, body: Buffer): string {
  return createHash('sha256').update(method).update('\n').update(target).update('\n').update(body).digest('base64url')
}

/**
 * The key as stored: per service and per caller (its bearer token, or the
 * ASYNC_AUTH_HEADER value), hashed, so one tenant's key can never name
 * another's answer and no secret is stored.
 */
export function scopedKey (service: string, caller: string, key: string): string {
  // JSON keeps the fields apart whatever they hold.
  return createHash('sha256').update(JSON.stringify([service, caller, key])).digest('base64url')
}

/** `Prefer: wait` (RFC 7240's preference, any value): a retry waits for the first request's answer instead of a 409. */
export function prefersWait (prefer: string | undefined): boolean {
  return prefer !== undefined && /(^|[\s,;])wait(\s*[=,;]|\s*$)/i.test(prefer)
}
