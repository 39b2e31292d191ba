// Reading a dead-letter queue without consuming it: each message is got
// unacknowledged and, once the command is done with the queue, every one not
// moved is given back in one go, so the queue keeps its messages in order.
import type { Channel, GetMessage } from 'amqplib'
import { H, type DeadLetterReason } from '../amqp/wire'

export interface Summary {
  readonly id: string
  readonly ageSeconds: number | null
  readonly reason: string
  readonly attempts: number | null
  readonly method: string
  readonly path: string
  readonly size: number
  readonly lastError: string | null
}

/** Headers never printed as they are: the service needs them, an operator's terminal does not. */
const SENSITIVE = new Set(['authorization', 'cookie', 'proxy-authorization', 'x-api-key'])

/** Calls `visit` for at most `max` messages of the queue (each left unacked); returns how many were seen. */
export async function forEachMessage (ch: Channel, queue: string, max: number, visit: (m: GetMessage) => Promise<void> | void): Promise<number> {
  let seen = 0
  while (seen < max) {
    const m = await ch.get(queue, { noAck: false })
    if (m === false) break
    seen++
    await visit(m)
  }
  return seen
}

export function summarize (m: GetMessage, now = Date.now()): Summary {
  const h = (m.properties.headers ?? {}) as Record<string, unknown>
  const at = Number(h[H.deadLetteredAt] ?? deathTime(h))
  return {
    id: String(m.properties.messageId ?? m.properties.correlationId ?? `#${m.fields.deliveryTag}`),
    ageSeconds: Number.isFinite(at) && at > 0 ? Math.max(0, Math.round((now - at) / 1000)) : null,
    reason: reasonOf(h),
    attempts: h[H.attempts] === undefined ? null : Number(h[H.attempts]),
    method: text(h[H.method]) ?? 'POST',
    path: text(h[H.path]) ?? '(DOWNSTREAM_URL)',
    size: m.content.length,
    lastError: text(h[H.lastError]) ?? null,
  }
}

// Every reason `--reason` may name: relayq's own (the compiler demands each
// DeadLetterReason here) and the broker's, for messages it dead-lettered.
const OWN_REASONS: Record<DeadLetterReason, true> = { max_attempts: true, malformed: true, expired: true, too_large: true, redelivery_limit: true, reply_unroutable: true }
export const KNOWN_REASONS: readonly string[] = [...Object.keys(OWN_REASONS), 'rejected', 'delivery_limit', 'maxlen', 'unknown']

/** relayq's reason, or the broker's (expired, rejected, delivery_limit, maxlen) for messages it dead-lettered. */
export function reasonOf (h: Record<string, unknown>): string {
  const own = text(h[H.deadLetterReason]) ?? text(h['x-first-death-reason'])
  if (own !== undefined) return own
  const deaths = h[H.death]
  if (Array.isArray(deaths) && deaths.length > 0) return text((deaths[0] as Record<string, unknown>).reason) ?? 'unknown'
  return 'unknown'
}

/** A header value as text (AMQP strings may arrive as Buffers). */
function text (v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (Buffer.isBuffer(v)) return v.toString('utf8')
  return undefined
}

function deathTime (h: Record<string, unknown>): number | undefined {
  const deaths = h[H.death]
  if (!Array.isArray(deaths) || deaths.length === 0) return undefined
  const time = (deaths[0] as Record<string, unknown>).time as { value?: number } | number | undefined
  const seconds = typeof time === 'object' && time !== null ? time.value : time
  return typeof seconds === 'number' ? seconds * 1000 : undefined
}

/** Headers for display: sensitive values redacted unless asked for. */
export function displayHeaders (m: GetMessage, showSecrets: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries((m.properties.headers ?? {}))) {
    out[k] = !showSecrets && SENSITIVE.has(k.toLowerCase()) ? '[redacted]' : v
  }
  return out
}

/** Text when the body is valid UTF-8, base64 otherwise. */
export function displayBody (content: Buffer): { encoding: 'utf8' | 'base64', body: string } {
  const text = content.toString('utf8')
  return Buffer.from(text, 'utf8').equals(content) ? { encoding: 'utf8', body: text } : { encoding: 'base64', body: content.toString('base64') }
}
