// relayq's control headers on request messages: the attempt count, the lost
// deliveries (which make a message a suspect) and the first attempt's time.
// Every count the dequeuer acts on is read here.
//
// Any principal that may publish to the default exchange can put these
// headers on a message. With RELAYQ_MESSAGE_KEY set, the dequeuer signs them
// (HMAC-SHA256 over the three values, the message's ids and its body) on every
// copy it republishes to a request queue, and ignores them on a message whose
// signature does not verify: such a message counts as a first attempt that
// is no suspect. The broker's own count (x-delivery-count on quorum queues)
// is always trusted.
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Message } from 'amqplib'
import { firstAttemptAt, lostDeliveries, priorAttempts, H, type Publishable } from '../amqp/wire'

export interface Counts {
  readonly attempts: number
  readonly lostDeliveries: number
  readonly firstAttemptAt: number | null
}

export const SIGNATURE_HEADER = 'x-relayq-signature'
const VERSION = 'v1:'

export class ControlHeaders {
  constructor (private readonly key: string | null, private readonly onIgnored: () => void = () => {}) {}

  counts (msg: Message, quorum: boolean): Counts {
    if (this.key === null || this.verified(msg)) {
      return { attempts: priorAttempts(msg, quorum), lostDeliveries: lostDeliveries(msg, quorum), firstAttemptAt: firstAttemptAt(msg) }
    }
    this.onIgnored()
    // Only the broker's count is left: the delivery count quorum queues keep.
    const broker = priorAttempts(msg, quorum) - priorAttempts(msg, false)
    return { attempts: broker, lostDeliveries: broker, firstAttemptAt: null }
  }

  /** A copy for a request queue, its control headers signed when there is a key. */
  sign (copy: Publishable): Publishable {
    if (this.key === null) return copy
    const headers = (copy.options.headers ?? {}) as Record<string, unknown>
    const msg = { properties: { ...copy.options, headers }, content: copy.content } as unknown as Message
    headers[SIGNATURE_HEADER] = VERSION + this.mac(msg).toString('base64url')
    copy.options.headers = headers
    return copy
  }

  private verified (msg: Message): boolean {
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
    if (headers[H.attempts] === undefined && headers[H.lostDeliveries] === undefined && headers[H.firstAttemptAt] === undefined) return true
    const given = headers[SIGNATURE_HEADER]
    const text = typeof given === 'string' ? given : Buffer.isBuffer(given) ? given.toString('latin1') : ''
    if (!text.startsWith(VERSION)) return false
    const sig = Buffer.from(text.slice(VERSION.length), 'base64url')
    const want = this.mac(msg)
    return sig.length === want.length && timingSafeEqual(sig, want)
  }

  /** Over what the counts mean (read back as numbers, whatever their wire type) and the message they belong to. */
  private mac (msg: Message): Buffer {
    const p = msg.properties
    const fields = [priorAttempts(msg, false), lostDeliveries(msg, false), firstAttemptAt(msg) ?? 0, String(p.correlationId ?? ''), String(p.messageId ?? '')]
    return createHmac('sha256', this.key!).update(`relayq-control\n${fields.join('\n')}\n`).update(msg.content).digest()
  }
}
