// Streaming a service's response to an enqueuer that announced it takes
// streams (docs/streaming.md). One plain channel on the publishing
// connection sends every stream's messages to the requesters' direct reply-to
// addresses and consumes its own direct reply-to, where credits and cancels
// come back. Each stream sends at most `window` messages beyond the last one
// its enqueuer said it wrote to the client; past that it stops reading from
// the service (undici stops reading the socket, so the service's writes
// block). No credit within the announced wait, a cancel, or the channel's
// loss aborts the service call.
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { publish } from '../amqp/publish'
import { readAccept, readControl, type StreamAccept } from '../amqp/stream-wire'
import { DIRECT_REPLY_TO, H, type Publishable } from '../amqp/wire'
import { responseHeaderTable } from '../http/headers'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { Prepared } from './prepare'
import { unencodable } from './reply'
import { StreamSink, type StreamOwner } from './stream-sink'

export interface StreamSettings {
  /** DEQUEUER_STREAM_THRESHOLD_BYTES; 0 never streams. */
  readonly thresholdBytes: number
  /** Statuses the dequeuer retries: answered buffered, so they can still be retried. */
  readonly retryStatuses: ReadonlySet<number>
}

/**
 * Whether a response streams: `now` (an event stream, or a body declared over
 * the threshold), `later` (a body of unknown length: streamed only if it
 * outlasts STREAM_LATER_MS or STREAM_LATER_BYTES, forward.ts), or `never`.
 */
export type StreamDecision = 'now' | 'later' | 'never'

/** What the call to the service may turn into a stream, decided once its status and headers arrive. */
export interface StreamOffer {
  decide: (status: number, rawHeaders: readonly Buffer[]) => StreamDecision
  /** Sends the head and returns the sink for the body, or null (nothing sent) to buffer it as usual. */
  open: (status: number, rawHeaders: Buffer[], resume: () => void, abort: (err: Error) => void) => StreamSink | null
}

const DIRECT_REPLY_PREFIX = `${DIRECT_REPLY_TO}.`

/** One request's offer: an object, not closures, as every call to a requester that takes streams makes one. */
class Offer implements StreamOffer {
  constructor (private readonly channel: StreamChannel, private readonly settings: StreamSettings, private readonly accept: StreamAccept, private readonly replyTo: string, private readonly correlationId: string) {}

  decide (status: number, raw: readonly Buffer[]): StreamDecision {
    return wantsStream(status, raw, this.settings)
  }

  open (status: number, raw: Buffer[], resume: () => void, abort: (err: Error) => void): StreamSink | null {
    return this.channel.open(this.accept, this.replyTo, this.correlationId, status, raw, resume, abort)
  }
}

export class StreamChannel implements StreamOwner {
  private ch: Channel | null = null
  private readonly active = new Map<string, StreamSink>()

  constructor (private readonly settings: StreamSettings, private readonly logger: Logger, private readonly metrics: DequeuerMetrics) {}

  async attach (conn: ChannelModel): Promise<void> {
    if (this.settings.thresholdBytes === 0) return
    const ch = await conn.createChannel()
    ch.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'stream channel error'))
    ch.on('close', () => this.lost(ch))
    ch.on('drain', () => { for (const s of this.active.values()) s.pump() })
    await ch.consume(DIRECT_REPLY_TO, (msg) => this.onControl(msg), { noAck: true })
    this.ch = ch
  }

  detach (): void {
    const ch = this.ch
    if (ch !== null) this.lost(ch)
  }

  /** The one check per call: does this request's requester take a stream? */
  offer (p: Prepared): StreamOffer | null {
    if (this.ch === null || p.req.jobId !== undefined || p.req.method === 'HEAD') return null
    const headers = p.d.msg.properties.headers as Record<string, unknown> | undefined
    const accept = readAccept(headers)
    const replyTo = p.req.replyTo
    const correlationId = p.req.correlationId
    // Only to a direct reply-to address: the requester is the publisher itself, so a forged announcement streams to no one else.
    if (accept === null || replyTo === undefined || !replyTo.startsWith(DIRECT_REPLY_PREFIX) || correlationId === undefined) return null
    return new Offer(this, this.settings, accept, replyTo, correlationId)
  }

  /** Publishes one stream message; false when the channel is saturated (wait for 'drain'), throws when it is gone. */
  send (replyTo: string, message: Publishable): boolean {
    const ch = this.ch
    if (ch === null) throw new Error('no stream channel')
    return publish(ch, '', replyTo, message)
  }

  forget (id: string): void {
    this.active.delete(id)
  }

  /** @internal Offer's. */
  open (accept: StreamAccept, replyTo: string, correlationId: string, status: number, raw: Buffer[], resume: () => void, abort: (err: Error) => void): StreamSink | null {
    const { table } = responseHeaderTable(raw, false)
    table[H.status] = String(status)
    if (unencodable(table) !== null) return null
    const sink = new StreamSink(this, this.metrics, accept, replyTo, correlationId, status, resume, abort)
    try {
      sink.start(table)
    } catch {
      // The channel went between the offer and the head: nothing was sent, so the answer is buffered as usual.
      return null
    }
    this.active.set(sink.id, sink)
    this.metrics.streamStarted()
    return sink
  }

  private onControl (msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.ch?.close().catch(() => {})
      return
    }
    const control = readControl(msg)
    if (control === null) return
    const sink = this.active.get(control.id)
    if (sink === undefined || sink.correlationId !== msg.properties.correlationId) return
    if ('cancel' in control) sink.cut('cancelled')
    else sink.credit(control.ack)
  }

  private lost (ch: Channel): void {
    if (this.ch !== ch) return
    this.ch = null
    for (const s of [...this.active.values()]) s.cut('broker_lost')
  }
}

const CONTENT_TYPE = Buffer.from('content-type')
const CONTENT_LENGTH = Buffer.from('content-length')
const T = 0x74

/**
 * Stream or buffer: an event stream or a body declared above the threshold
 * now; a body of unknown length later, if it turns out long or slow (most
 * chunked answers are small and complete at once: streamed, they would cost
 * three messages instead of one, and a connection lost after the head could
 * only cut them, where a buffered answer still gets relayq's own error).
 */
export function wantsStream (status: number, raw: readonly Buffer[], settings: StreamSettings): StreamDecision {
  if (status < 200 || status > 599 || status === 204 || status === 304 || settings.retryStatuses.has(status)) return 'never'
  let length: number | null = null
  // Every response to a relayq enqueuer passes here: names are compared as bytes, and only a content type that
  // begins with "t" is turned into a string.
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 12 && (name.equals(CONTENT_TYPE) || name.toString('latin1').toLowerCase() === 'content-type')) {
      // undici hands values without leading whitespace.
      const value = raw[i + 1]!
      if (((value[0] ?? 0) | 0x20) === T && value.toString('latin1').toLowerCase().startsWith('text/event-stream')) return 'now'
    } else if (name.length === 14 && (name.equals(CONTENT_LENGTH) || name.toString('latin1').toLowerCase() === 'content-length')) {
      length = decimal(raw[i + 1]!)
    }
  }
  if (length === null) return 'later'
  return !Number.isFinite(length) || length > settings.thresholdBytes ? 'now' : 'never'
}

/** A Content-Length value read from its bytes; NaN unless it is all digits. */
function decimal (value: Buffer): number {
  if (value.length === 0 || value.length > 15) return NaN
  let n = 0
  for (const c of value) {
    if (c < 0x30 || c > 0x39) return NaN
    n = n * 10 + c - 0x30
  }
  return n
}
