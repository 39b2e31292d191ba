// The W3C traceparent read and written without OpenTelemetry's objects, so
// that a request the sampler leaves out costs a header read and, at most, a
// header write. OpenTelemetry's propagator builds a context per extract and
// per inject and checks each id with its own regular expression: most of the
// 11-17 µs an unsampled request cost at 1% sampling (bench/tracing-cost.ts).
// What it accepts is what OpenTelemetry's W3CTraceContextPropagator accepts
// (test/unit/tracing-fast-path.test.ts compares the two), so both paths agree
// on which requests have a parent.
import { randomFillSync } from 'node:crypto'

export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  /** The trace flags byte; bit 0 is sampled. */
  readonly flags: number
  readonly sampled: boolean
}

const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)
const LENGTH = 55

/** A message header value or an HTTP header value, as a string (other publishers may send bytes). */
export function headerText (v: unknown): string | null {
  if (typeof v === 'string') return v
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0]
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  return null
}

/** The parent a traceparent names, or null (absent or invalid: the request starts a trace). */
export function parseTraceparent (value: unknown): TraceParent | null {
  let s = headerText(value)
  if (s === null || s.length < LENGTH) return null
  // The common case, as every tracer writes it: version 00, nothing around it. Checked by character code alone; the
  // rest goes the general way below. (Every message a dequeuer takes with tracing on comes this way.)
  if (s.length === LENGTH && s.charCodeAt(0) === 48 && s.charCodeAt(1) === 48) return read(s)
  // OpenTelemetry's pattern allows one whitespace character at each end.
  if (/\s/.test(s[0]!)) s = s.slice(1)
  if (s.length > LENGTH && /\s/.test(s[s.length - 1]!)) s = s.slice(0, -1)
  const version = s.slice(0, 2)
  if (version === 'ff') return null
  if (s.length !== LENGTH) {
    // Versions after 00 may carry more fields; 00 may not.
    if (version === '00' || s[LENGTH] !== '-') return null
    s = s.slice(0, LENGTH)
  }
  return read(s)
}

/** `s`: exactly LENGTH characters, its version known not to be ff. */
function read (s: string): TraceParent | null {
  if (!wellFormed(s)) return null
  const traceId = s.slice(3, 35)
  const spanId = s.slice(36, 52)
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null
  const flags = (hexValue(s.charCodeAt(53)) << 4) | hexValue(s.charCodeAt(54))
  return { traceId, spanId, flags, sampled: (flags & 1) === 1 }
}

/** A lower-case hex digit's value (wellFormed has checked it is one). */
function hexValue (c: number): number {
  return c < 58 ? c - 48 : c - 87
}

/** 1 for the characters of lower-case hex, by character code. */
const HEX = new Uint8Array(128)
for (const c of '0123456789abcdef') HEX[c.charCodeAt(0)] = 1

/** `vv-<32 hex>-<16 hex>-ff`, lower-case hex: OpenTelemetry's pattern, checked by character (a regular expression cost more than the rest of the read). */
function wellFormed (s: string): boolean {
  if (s.charCodeAt(2) !== 45 || s.charCodeAt(35) !== 45 || s.charCodeAt(52) !== 45) return false // '-'
  let bad = 0
  for (let i = 0; i < LENGTH; i++) {
    if (i === 2 || i === 35 || i === 52) continue
    // A character past 127 reads as undefined, which is not 1.
    bad |= HEX[s.charCodeAt(i)] === 1 ? 0 : 1
  }
  return bad === 0
}

/** The traceparent relayq writes: version 00 and the flags as OpenTelemetry's propagator writes them. */
export function formatTraceparent (traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${flags === 1 ? '01' : flags === 0 ? '00' : `0${flags.toString(16)}`}`
}

// Random ids from a pool filled 4 KiB at a time and turned into hex at once: one system call and one
// conversion per about 170 requests, and each id a slice of that text (no native call per id).
const POOL = Buffer.alloc(4096)
let pool = ''
let used = 0

function randomHex (bytes: number): string {
  const chars = bytes * 2
  for (;;) {
    if (used + chars > pool.length) {
      randomFillSync(POOL)
      pool = POOL.toString('hex')
      used = 0
    }
    const hex = pool.slice(used, used + chars)
    used += chars
    // All zeros is the invalid id; about never, but then draw again.
    if (hex !== (chars === 16 ? ZERO_SPAN : ZERO_TRACE)) return hex
  }
}

export function newTraceId (): string {
  return randomHex(16)
}

export function newSpanId (): string {
  return randomHex(8)
}
