// One publishing channel of the enqueuer: a confirm channel that also
// consumes RabbitMQ's direct reply-to pseudo-queue, and the table of requests
// waiting on it. Direct reply-to replies only reach the channel that
// published the request, so the table lives and dies with the channel: when
// it closes, every waiting request is told at once (502), not left to time out.
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { DIRECT_REPLY_TO, type Publishable } from '../amqp/wire'
import { confirmError, watchConfirms } from '../amqp/errors'
import { publish } from '../amqp/publish'
import { encodeControl, streamPosition } from '../amqp/stream-wire'

/** What the channel needs from a waiting request. */
export interface Waiter {
  readonly correlationId: string
  onConfirm: (err: Error | null) => void
  onReply: (msg: ConsumeMessage) => void
  onReturned: () => void
  onChannelLost: () => void
  /** The drain deadline passed while this request was still waiting. */
  onShutdown: () => void
  /** One of the calls above threw: answer this request 502 and nothing else. */
  onBadReply: (err: unknown) => void
  /** Takes more than one reply (a streamed answer, stream.ts): stays in the table until it forgets itself. */
  readonly keep?: boolean
}

/**
 * Runs a waiter's handling of one delivery (reply, return, confirm). It runs
 * inside amqplib's frame handling, where a throw closes the channel and fails
 * every other request waiting on it: whatever goes wrong stays with this one.
 */
function guarded (waiter: Waiter, logger: Logger, handle: () => void): void {
  try {
    handle()
  } catch (err) {
    try {
      waiter.onBadReply(err)
    } catch (again) {
      logger.error({ err: again instanceof Error ? again.message : String(again), correlationId: waiter.correlationId }, 'cannot answer a request whose reply failed')
    }
  }
}

export class RpcChannel {
  private ch: ConfirmChannel | null = null
  private readonly pending = new Map<string, Waiter>()
  private saturated = false

  constructor (
    private readonly logger: Logger,
    private readonly onLateReply: () => void,
    private readonly onClosed: (channel: RpcChannel) => void,
  ) {}

  get ready (): boolean {
    return this.ch !== null
  }

  /** False while the channel's write buffer is full: new requests go elsewhere or get 503. */
  get writable (): boolean {
    return this.ch !== null && !this.saturated
  }

  get size (): number {
    return this.pending.size
  }

  async open (conn: ChannelModel): Promise<void> {
    const ch = await conn.createConfirmChannel()
    watchConfirms(ch)
    ch.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'publishing channel error'))
    ch.on('close', () => this.onClose(ch))
    ch.on('return', (msg: ConsumeMessage) => this.onReturn(msg))
    ch.on('drain', () => { this.saturated = false })
    // The reply consumer must exist before the first publish that names
    // amq.rabbitmq.reply-to, or the broker closes the channel.
    await ch.consume(DIRECT_REPLY_TO, (msg) => this.onReply(msg), { noAck: true })
    this.saturated = false
    this.ch = ch
  }

  /**
   * Publishes a request; the waiter hears about its confirm, its reply or the
   * channel's loss. Throws, having sent nothing, when it cannot encode
   * the message (a header name over 255 bytes, a header table over 64 KiB).
   */
  publish (queue: string, message: Publishable, waiter: Waiter): void {
    const ch = this.ch
    if (ch === null) {
      waiter.onChannelLost()
      return
    }
    this.pending.set(waiter.correlationId, waiter)
    let accepted: boolean
    try {
      accepted = publish(ch, '', queue, message, (err: unknown) => {
        guarded(waiter, this.logger, () => waiter.onConfirm(err === null || err === undefined ? null : confirmError(ch, err)))
      })
    } catch (err) {
      // The whole message is encoded before anything is written or a confirm
      // registered, so a throw (a header table too large to encode) sent nothing.
      this.pending.delete(waiter.correlationId)
      throw err
    }
    if (!accepted) this.saturated = true
  }

  /** Waits for a reply without publishing (a keyed request's late reply); false when the channel is gone. */
  listen (waiter: Waiter): boolean {
    if (this.ch === null) return false
    this.pending.set(waiter.correlationId, waiter)
    return true
  }

  /**
   * A stream's credit or cancel to a dequeuer's direct reply-to address. Not
   * confirmed and not mandatory: RabbitMQ 3.x returns direct replies even when
   * delivered, and a lost one is covered by the dequeuer's credit wait.
   */
  sendControl (replyTo: string, message: Publishable): void {
    const ch = this.ch
    if (ch === null) return
    try {
      if (!publish(ch, '', replyTo, message)) this.saturated = true
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'cannot send a stream control message')
    }
  }

  /** Forgets a waiter that was answered some other way (timeout, confirm failure, client gone). */
  forget (correlationId: string): void {
    this.pending.delete(correlationId)
  }

  private onReply (msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the reply consumer: replies can no longer arrive here.
      this.logger.warn('direct reply-to consumer cancelled by the broker')
      this.ch?.close().catch(() => {})
      return
    }
    const id = msg.properties.correlationId as string | undefined
    const waiter = id === undefined ? undefined : this.pending.get(id)
    if (waiter === undefined) {
      this.onLateReply()
      this.cancelOrphan(msg, id)
      return
    }
    if (waiter.keep !== true) this.pending.delete(id as string)
    guarded(waiter, this.logger, () => waiter.onReply(msg))
  }

  /** A stream nobody here waits for (its client is gone, or a redelivered request's second stream): stop it. */
  private cancelOrphan (msg: ConsumeMessage, id: string | undefined): void {
    const pos = id === undefined ? null : streamPosition(msg)
    if (pos === null || pos.kind === 'end') return
    this.sendControl(pos.replyTo, encodeControl(id as string, pos.id, { cancel: 'no_waiter' }))
  }

  private onReturn (msg: ConsumeMessage): void {
    const id = msg.properties.correlationId as string | undefined
    const waiter = id === undefined ? undefined : this.pending.get(id)
    if (waiter === undefined) return
    this.pending.delete(id as string)
    guarded(waiter, this.logger, () => waiter.onReturned())
  }

  private onClose (ch: ConfirmChannel): void {
    if (this.ch !== ch) return
    this.ch = null
    const waiting = [...this.pending.values()]
    this.pending.clear()
    for (const waiter of waiting) waiter.onChannelLost()
    this.onClosed(this)
  }

  /** Ends every waiting request (drain deadline). */
  shutdown (): void {
    const waiting = [...this.pending.values()]
    this.pending.clear()
    for (const waiter of waiting) waiter.onShutdown()
  }

  async close (): Promise<void> {
    const ch = this.ch
    if (ch !== null) await ch.close().catch(() => {})
  }
}
