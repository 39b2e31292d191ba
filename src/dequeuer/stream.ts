// Streaming a service's response to an enqueuer that announced it takes
// streams (docs/streaming.md). One plain channel on the publishing
// connection sends every stream's messages to the requesters' direct reply-to
// addresses and consumes its own direct reply-to, where credits and cancels
// come back. Each stream sends at most `window` messages beyond the last one
// its enqueuer said it wrote to the client; past that it stops reading from
// the service (undici stops reading the socket, so the service's writes
// block). No credit within the announced wait, a cancel, or the channel's
// loss aborts the service call.
import { randomUUID } from 'node:crypto'
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { publish } from '../amqp/publish'
import { encodeStreamMessage, readAccept, readControl, type StreamAccept } from '../amqp/stream-wire'
import { DIRECT_REPLY_TO, H } from '../amqp/wire'
import type { ErrorCode } from '../errors'
import { responseHeaderTable } from '../http/headers'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { ForwardResult } from './forward'
import type { Prepared } from './prepare'
import { unencodable } from './reply'

/** Pieces of body per message: a bound on what one credit lets through (window × this). */
const PIECE_BYTES = 64 * 1024

export type StreamCut = 'cancelled' | 'credit_timeout' | 'broker_lost' | 'service_error'

export interface StreamSettings {
  /** DEQUEUER_STREAM_THRESHOLD_BYTES; 0 never streams. */
  readonly thresholdBytes: number
  /** Statuses the dequeuer retries: answered buffered, so they can still be retried. */
  readonly retryStatuses: ReadonlySet<number>
}

/** What the call to the service may turn into a stream, decided once its status and headers arrive. */
export interface StreamOffer {
  /** A sink for this response, or null to buffer it as usual. */
  open: (status: number, rawHeaders: Buffer[], resume: () => void, abort: (err: Error) => void) => StreamSink | null
}

export class StreamChannel {
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
    if (accept === null || replyTo === undefined || !replyTo.startsWith(`${DIRECT_REPLY_TO}.`) || correlationId === undefined) return null
    return { open: (status, raw, resume, abort) => this.open(accept, replyTo, correlationId, status, raw, resume, abort) }
  }

  /** Publishes one stream message; false when the channel is saturated (wait for 'drain'), throws when it is gone. */
  send (replyTo: string, message: Parameters<typeof publish>[3]): boolean {
    const ch = this.ch
    if (ch === null) throw new Error('no stream channel')
    return publish(ch, '', replyTo, message)
  }

  forget (id: string): void {
    this.active.delete(id)
  }

  private open (accept: StreamAccept, replyTo: string, correlationId: string, status: number, raw: Buffer[], resume: () => void, abort: (err: Error) => void): StreamSink | null {
    if (!wantsStream(status, raw, this.settings)) return null
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

/** Stream or buffer: an event stream, a body of unknown length, or one declared above the threshold. */
export function wantsStream (status: number, raw: readonly Buffer[], settings: StreamSettings): boolean {
  if (status < 200 || status > 599 || status === 204 || status === 304 || settings.retryStatuses.has(status)) return false
  let length: number | null = null
  // Every response to a relayq enqueuer passes here: names are compared as bytes, and only a content type that
  // begins with "t" is turned into a string.
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 12 && (name.equals(CONTENT_TYPE) || name.toString('latin1').toLowerCase() === 'content-type')) {
      // undici hands values without leading whitespace.
      const value = raw[i + 1]!
      if (((value[0] ?? 0) | 0x20) === T && value.toString('latin1').toLowerCase().startsWith('text/event-stream')) return true
    } else if (name.length === 14 && (name.equals(CONTENT_LENGTH) || name.toString('latin1').toLowerCase() === 'content-length')) {
      length = decimal(raw[i + 1]!)
    }
  }
  return length === null || !Number.isFinite(length) || length > settings.thresholdBytes
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

class Cut extends Error {
  override readonly name = 'StreamCut'
}

/** One streamed response: the service's body in, the stream's messages out, paced by the enqueuer's credits. */
export class StreamSink {
  readonly id = randomUUID()
  private seq = 0
  private acked = -1
  private readonly queue: Buffer[] = []
  private paused = false
  private ended: { trailers: Record<string, unknown>, code: ErrorCode | null } | null = null
  private cause: StreamCut | null = null
  private timer: NodeJS.Timeout | null = null
  private finish: ((r: ForwardResult) => void) | null = null
  private readonly done: Promise<ForwardResult>

  constructor (
    private readonly owner: StreamChannel,
    private readonly metrics: DequeuerMetrics,
    private readonly accept: StreamAccept,
    private readonly replyTo: string,
    readonly correlationId: string,
    private readonly status: number,
    private readonly resume: () => void,
    private readonly abort: (err: Error) => void,
  ) {
    this.done = new Promise((resolve) => { this.finish = resolve })
  }

  start (head: Record<string, unknown>): void {
    this.emit('head', head, Buffer.alloc(0))
  }

  /** A piece of the service's body; false asks undici to stop reading until `resume`. */
  data (chunk: Buffer): boolean {
    if (this.cause !== null) return false
    for (let off = 0; off < chunk.length; off += PIECE_BYTES) this.queue.push(chunk.subarray(off, off + PIECE_BYTES))
    this.pump()
    if (this.queue.length === 0) return true
    this.paused = true
    return false
  }

  /** The service's body ended (code null) or failed: the end message follows the queued chunks. */
  end (trailers: Buffer[] | string[] | null, code: ErrorCode | null): Promise<ForwardResult> {
    if (this.cause === null && this.ended === null) {
      const table: Record<string, unknown> = {}
      if (trailers !== null) Object.assign(table, responseHeaderTable(trailers, false).table)
      if (code !== null) {
        table['x-relayq-error'] = code
        this.cause = 'service_error'
      }
      this.ended = { trailers: table, code }
      this.pump()
    }
    return this.done
  }

  credit (ack: number): void {
    if (ack <= this.acked || ack >= this.seq) return
    this.acked = ack
    this.pump()
  }

  /** Ends the stream here: the service call is aborted, nothing more is sent. */
  cut (cause: StreamCut): void {
    if (this.finish === null) return
    this.cause = cause
    this.queue.length = 0
    this.abort(new Cut(cause))
    this.settle()
  }

  /** Sends what the credit allows; once the end is out, the call is over. */
  pump (): void {
    if (this.finish === null) return
    try {
      while (this.queue.length > 0 && this.seq - this.acked <= this.accept.window) {
        const piece = this.queue.shift()!
        this.metrics.streamChunk(piece.length)
        if (!this.emit('chunk', {}, piece)) return
      }
      if (this.queue.length > 0) {
        this.waitForCredit()
        return
      }
      if (this.ended !== null) {
        this.emit('end', this.ended.trailers, Buffer.alloc(0))
        this.settle()
        return
      }
    } catch {
      this.cut('broker_lost')
      return
    }
    this.disarm()
    if (this.paused) {
      this.paused = false
      this.resume()
    }
  }

  private emit (kind: 'head' | 'chunk' | 'end', headers: Record<string, unknown>, content: Buffer): boolean {
    const message = encodeStreamMessage(kind, this.id, this.seq++, this.correlationId, headers, content)
    return this.owner.send(this.replyTo, message)
  }

  /** No credit for the announced wait: the enqueuer (or its client) is gone. */
  private waitForCredit (): void {
    if (this.timer === null) this.timer = setTimeout(() => this.cut('credit_timeout'), this.accept.creditWaitMs)
  }

  private disarm (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  private settle (): void {
    const finish = this.finish
    if (finish === null) return
    this.finish = null
    this.disarm()
    this.owner.forget(this.id)
    this.metrics.streamEnded(this.cause ?? 'complete')
    const code = this.ended?.code ?? null
    finish({ kind: 'streamed', status: this.status, cut: this.cause, ...(code === null ? {} : { code }) })
  }
}
