// A streamed answer on its way to the client (docs/streaming.md). The head's
// status and headers are written at once, each chunk as it arrives (chunked
// transfer), and a credit goes back to the dequeuer once the client has taken
// what it was sent, so the dequeuer never runs more than a window ahead. A
// stream that goes wrong (a gap, a second stream for the same request, the
// dequeuer's error, silence past the idle timeout, a client that stops
// reading) is cut: the connection is destroyed without the final chunk, so
// the client sees an error, never a truncated success.
import type { ConsumeMessage } from 'amqplib'
import type { ServerResponse } from 'node:http'
import { encodeAccept, encodeControl, streamPosition, SH, type StreamPosition } from '../amqp/stream-wire'
import { decodeResponse, type IncomingResponse, type Publishable } from '../amqp/wire'
import type { EnqueuerConfig } from '../config/types'
import type { CallInit } from './call'
import type { EnqueuerContext } from './context'
import type { RpcChannel, Waiter } from './rpc-channel'

/** Messages the dequeuer may send beyond the last one acknowledged: with its 64 KiB pieces, at most 1 MiB in flight per stream. */
export const STREAM_WINDOW = 16
/** A credit every this many messages written. */
const ACK_EVERY = STREAM_WINDOW / 4
/** Beyond the send timeout, how long a dequeuer waits for a credit before it takes this enqueuer for gone. */
const CREDIT_GRACE_MS = 5000

export type ClientStreamCut = 'client_gone' | 'idle_timeout' | 'send_timeout' | 'gap' | 'second_stream' | 'dequeuer_error' | 'malformed' | 'broker_lost' | 'draining'

/** The header a request carries when this enqueuer takes a streamed answer to it; null when it takes none. */
export function streamAnnouncement (config: EnqueuerConfig): string | null {
  const { streamIdleTimeoutMs, sendTimeoutMs } = config
  if (streamIdleTimeoutMs === 0) return null
  return encodeAccept({ window: STREAM_WINDOW, creditWaitMs: sendTimeoutMs + CREDIT_GRACE_MS })
}

/** Puts the announcement on an encoded request (a string header, like every header relayq writes). */
export function announceStream (message: Publishable, value: string): void {
  (message.options.headers as Record<string, unknown>)[SH.accept] = value
}

export interface StreamHead {
  readonly reply: IncomingResponse
  readonly pos: StreamPosition
}

/** The head of a stream, checked; a string says why it cannot begin one. */
export function readStreamHead (msg: ConsumeMessage): StreamHead | string {
  const pos = streamPosition(msg)
  if (pos === null || pos.kind !== 'head' || pos.seq !== 0) return 'a streamed reply did not begin with its head'
  const reply = decodeResponse(msg)
  if (reply.malformed !== undefined) return reply.malformed
  if (reply.noBody || reply.status < 200 || reply.status > 599) return 'a streamed reply must carry a final status with a body'
  return { reply, pos }
}

/** Starts writing the stream to the client; the call that published the request has ended. */
export function startClientStream (ctx: EnqueuerContext, init: CallInit, channel: RpcChannel, head: StreamHead, answerId: string): void {
  new ClientStream(ctx, init, channel, head.pos).start(head.reply, answerId)
}

class ClientStream implements Waiter {
  readonly correlationId: string
  readonly keep = true
  private next = 1
  private written = 0
  private acked = 0
  private waitingDrain = false
  /** Bytes written while the client held us up, counted in ENQUEUER_MAX_BUFFERED_BYTES until it drains. */
  private held = 0
  private done = false
  private idle: NodeJS.Timeout | null = null
  private stall: NodeJS.Timeout | null = null
  private readonly res: ServerResponse

  constructor (private readonly ctx: EnqueuerContext, private readonly init: CallInit, private readonly channel: RpcChannel, private readonly pos: StreamPosition) {
    this.correlationId = init.correlationId
    this.res = init.res
  }

  start (reply: IncomingResponse, answerId: string): void {
    const { ctx, init, res } = this
    const seconds = (performance.now() - init.startedAt) / 1000
    ctx.metrics.answered(init.service, reply.status, seconds)
    ctx.metrics.streamStarted(init.service, seconds)
    if (res.destroyed) {
      this.cut('client_gone')
      return
    }
    // decodeResponse already kept only headers Node writes (tokens, latin1 values, no hop-by-hop or relayq ones).
    const headers = [...reply.headers]
    headers.push('x-correlation-id', answerId)
    if (init.coldStart !== undefined) headers.push('x-relayq-cold-start-ms', String(init.coldStart.answered()))
    res.writeHead(reply.status, headers)
    // Sent now, not with the first chunk: the client learns the status while the service is still producing.
    res.flushHeaders()
    res.once('close', () => {
      this.hold(-this.held)
      const stalled = this.stall !== null
      if (stalled) clearTimeout(this.stall!)
      if (!this.done) this.cut(stalled ? 'send_timeout' : 'client_gone')
    })
    if (!this.channel.listen(this)) {
      this.cut('broker_lost')
      return
    }
    this.idle = setTimeout(() => this.cut('idle_timeout'), ctx.config.streamIdleTimeoutMs)
  }

  onReply (msg: ConsumeMessage): void {
    if (this.done) return
    const pos = streamPosition(msg)
    if (pos === null) return this.cut('malformed')
    if (pos.id !== this.pos.id) {
      // The request was delivered again (its first dequeuer died mid-stream): that call is stopped, and this
      // response, already cut short, is ended as an error rather than spliced with a second answer.
      this.channel.sendControl(pos.replyTo, encodeControl(this.correlationId, pos.id, { cancel: 'second_stream' }))
      return this.cut('second_stream')
    }
    if (pos.seq < this.next) return // a duplicate
    if (pos.seq > this.next) return this.cut('gap')
    this.next++
    if (!this.waitingDrain) this.idle?.refresh()
    if (pos.kind === 'chunk') return this.write(msg.content, pos.seq)
    if (pos.kind === 'end') return this.finish(msg)
    this.cut('malformed')
  }

  private write (chunk: Buffer, seq: number): void {
    this.ctx.metrics.streamChunk(this.init.service, chunk.length)
    if (this.res.write(chunk)) {
      if (!this.waitingDrain) this.wrote(seq)
      return
    }
    if (this.waitingDrain) {
      this.hold(chunk.length)
      return
    }
    this.waitingDrain = true
    this.hold(this.res.writableLength)
    // The client holds us up: it gets ENQUEUER_SEND_TIMEOUT_MS to take something, as a buffered answer does; the
    // dequeuer, out of credit, sends nothing meanwhile, so the idle timeout does not run until the client reads.
    if (this.idle !== null) clearTimeout(this.idle)
    this.stall = setTimeout(() => {
      this.ctx.metrics.sendTimedOut()
      this.res.destroy()
    }, this.ctx.config.sendTimeoutMs)
    this.res.once('drain', () => {
      if (this.stall !== null) clearTimeout(this.stall)
      this.stall = null
      this.waitingDrain = false
      this.hold(-this.held)
      if (!this.done) this.idle = setTimeout(() => this.cut('idle_timeout'), this.ctx.config.streamIdleTimeoutMs)
      this.wrote(this.next - 1)
    })
  }

  private hold (bytes: number): void {
    this.held += bytes
    if (bytes >= 0) this.ctx.sender.hold(bytes)
    else this.ctx.sender.release(-bytes)
  }

  /** Everything up to `seq` is with the kernel: credit the dequeuer every few messages. */
  private wrote (seq: number): void {
    this.written = seq
    if (this.written - this.acked < ACK_EVERY || this.done) return
    this.acked = this.written
    this.channel.sendControl(this.pos.replyTo, encodeControl(this.correlationId, this.pos.id, { ack: this.acked }))
  }

  private finish (msg: ConsumeMessage): void {
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
    if (headers[SH.error] !== undefined) return this.cut('dequeuer_error', false)
    const trailers = decodeResponse(msg).headers
    this.close('complete')
    if (trailers.length > 0) this.res.addTrailers(pairs(trailers))
    this.res.end()
  }

  /** Ends the response as an error: the connection goes without the last chunk. */
  private cut (cause: ClientStreamCut, tellDequeuer = cause !== 'broker_lost' && cause !== 'dequeuer_error'): void {
    if (this.done) return
    if (tellDequeuer) this.channel.sendControl(this.pos.replyTo, encodeControl(this.correlationId, this.pos.id, { cancel: cause }))
    this.close(cause)
    this.res.destroy()
  }

  private close (result: ClientStreamCut | 'complete'): void {
    this.done = true
    if (this.idle !== null) clearTimeout(this.idle)
    // A complete stream still being written keeps its send timeout: a client that stops reading the tail is dropped too.
    if (this.stall !== null && result !== 'complete') clearTimeout(this.stall)
    this.channel.forget(this.correlationId)
    this.ctx.metrics.streamEnded(this.init.service, result)
    if (result !== 'complete') this.ctx.logger.debug({ service: this.init.service, correlationId: this.correlationId, cause: result }, 'stream cut')
  }

  onConfirm (): void {}
  onReturned (): void {}
  onChannelLost (): void { this.cut('broker_lost') }
  onShutdown (): void { this.cut('draining') }
  onBadReply (): void { this.cut('malformed') }
}

function pairs (flat: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!])
  return out
}
