// Reading and writing the values of relayq's control headers strictly: what
// a peer may put there is checked here (integers without exponents or hex,
// deadlines and counts in range, final statuses), so a forged value makes a
// message malformed instead of reaching the broker as an invalid property.
// Pure: no I/O, no state.

/**
 * How far from now a deadline relayq reads may lie: the furthest relayq writes
 * is an async job's, ASYNC_JOB_TTL's maximum of 30 days. Anything beyond is
 * forged or broken, and would become an expiration the broker refuses.
 */
export const MAX_DEADLINE_SPAN_MS = 30 * 86400 * 1000
/** Counts relayq reads (attempts, lost deliveries, the broker's delivery count): DEQUEUER_DELIVERY_LIMIT's maximum. */
export const MAX_COUNT = 1_000_000
/** The longest `expiration` relayq writes; RabbitMQ refuses more than 2^32-1 ms, and a deadline never lies further out. */
export const MAX_EXPIRATION_MS = MAX_DEADLINE_SPAN_MS

/** An integer header: an AMQP integer, or decimal digits (no exponent, hex, fraction or spaces); else null. */
export function integerValue (value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : null
  const s = safeString(value)
  if (s === undefined || !/^-?[0-9]{1,16}$/.test(s)) return null
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : null
}

/** A valid `expiration` for a message whose caller gives up at `deadline`: whole milliseconds, 1 at least; undefined for no usable deadline. */
export function expirationUntil (deadline: number, now: number): string | undefined {
  if (!Number.isFinite(deadline)) return undefined
  return String(Math.min(MAX_EXPIRATION_MS, Math.max(1, Math.ceil(deadline - now))))
}

/** Statuses a reply may carry: 1xx are interim answers and 101 switches protocols, never a final reply. */
const FINAL_STATUS_MIN = 200
const FINAL_STATUS_MAX = 599
const CONTENT_LENGTH = /^[0-9]{1,15}$/

/** A Content-Length value: decimal digits only (not "abc", not "5, 6"), normalised; else null. */
export function contentLengthValue (value: unknown): string | null {
  const s = safeString(value)
  return s === undefined || !CONTENT_LENGTH.test(s) ? null : String(Number(s))
}

/** Three decimal digits (ProxyMQ writes a string; older relayq an integer), within the final statuses; else null. */
export function parseStatus (value: unknown): number | null {
  let n: number
  if (typeof value === 'number') n = value
  else {
    const s = safeString(value)
    if (s === undefined || !/^[0-9]{3}$/.test(s)) return null
    n = Number(s)
  }
  return Number.isInteger(n) && n >= FINAL_STATUS_MIN && n <= FINAL_STATUS_MAX ? n : null
}

export function safeString (value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  return undefined
}

/** Lenient on purpose: decodeRequest has refused out-of-range counts; a malformed message's copy counts them as 0. */
export function nonNegativeInt (value: unknown): number {
  const n = value === undefined ? null : integerValue(value)
  return n !== null && n > 0 && n <= MAX_COUNT ? n : 0
}
