// One streamed response on the dequeuer: the service's body in, the stream's
// messages out (head, chunks of at most 64 KiB, end), never more than the
// window beyond the enqueuer's last credit. Out of credit it asks undici to
// stop reading the service; no credit within the announced wait, a cancel,
// or the channel's loss aborts the service call. stream.ts decides when a
// response streams and carries the messages.
import { randomUUID } from 'node:crypto'
import { encodeStreamMessage, type StreamAccept } from '../amqp/stream-wire'
import type { Publishable } from '../amqp/wire'
import type { ErrorCode } from '../errors'
import { responseHeaderTable } from '../http/headers'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import type { ForwardResult, StreamCut } from './call-result'

/** Pieces of body per message: a bound on what one credit lets through (window × this). */
const PIECE_BYTES = 64 * 1024

/** Where a sink's messages go (the stream channel). */
export interface StreamOwner {
  /** False when the channel is saturated (wait for its 'drain'); throws when it is gone. */
  send: (replyTo: string, message: Publishable) => boolean
  forget: (id: string) => void
}

class Cut extends Error {
  override readonly name = 'StreamCut'
}

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
    private readonly owner: StreamOwner,
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
