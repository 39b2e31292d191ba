// The dequeuer's publishing side, on a connection of its own: a broker memory
// alarm blocks publishing connections, and a connection that both publishes
// and consumes would stop receiving too. Replies, retries, requeues and
// dead-letter copies all go through here. Holding no deliveries, this channel
// can be closed by an oversized publish without sending any message back to
// the queue.
//
// Every confirmed publish goes to a named queue (a retry, dead-letter or
// request queue, an async job's results queue) and is `mandatory`: a message
// no queue takes comes back as a return instead of vanishing. The service's
// own queues are then declared again and the message published once more; if
// it still comes back, the publish fails, and the caller returns the original
// delivery to the queue. Direct replies (amq.rabbitmq.reply-to) are neither:
// RabbitMQ 3.x returns them even when the requester receives them.
import type { ChannelModel, ConfirmChannel, Message } from 'amqplib'
import type { Logger } from 'pino'
import type { Publishable } from '../amqp/wire'
import { confirmError, watchConfirms } from '../amqp/errors'
import { publish } from '../amqp/publish'

export class PublishError extends Error {
  override readonly name = 'PublishError'
}

/** No queue took a mandatory message (basic.return). */
export class UnroutableError extends Error {
  override readonly name = 'UnroutableError'
}

export interface PublishOptions {
  /** Wait for the broker's confirm (the message is safely queued) before resolving; the publish is then mandatory. */
  readonly confirm: boolean
}

export interface PublisherHooks {
  /** Declares the service's queues again, after a copy to one of them came back. */
  readonly redeclare?: (conn: ChannelModel) => Promise<void>
}

/** How long a publish waits for the connection to come back, and for a confirm. */
const WAIT_FOR_CHANNEL_MS = 10000
const CONFIRM_TIMEOUT_MS = 10000

interface Pending {
  readonly exchange: string
  readonly routingKey: string
  readonly correlationId: unknown
  returned: boolean
  timer: NodeJS.Timeout | null
  /** The confirm timeout passed while the connection was blocked: waiting for the unblock (or the channel's loss). */
  heldByAlarm: boolean
  readonly fail: (err: Error) => void
}

export class Publisher {
  private ch: ConfirmChannel | null = null
  private conn: ChannelModel | null = null
  private waiters: Array<() => void> = []
  private pending: Pending[] = []
  private blocked = false

  constructor (private readonly logger: Logger, private readonly hooks: PublisherHooks = {}) {}

  get ready (): boolean {
    return this.ch !== null
  }

  async attach (conn: ChannelModel): Promise<void> {
    this.conn = conn
    this.blocked = false
    await this.open(conn)
  }

  detach (): void {
    this.conn = null
    this.ch = null
    this.blocked = false
  }

  /**
   * The broker blocked (or unblocked) the publishing connection. A publish
   * written before or during an alarm goes out when it clears, so its confirm
   * timeout does not count while blocked: failing it then would return the
   * original to the queue while the copy is still on its way, and every alarm
   * cycle would add another copy.
   */
  setBlocked (blocked: boolean): void {
    this.blocked = blocked
    if (blocked) return
    for (const p of this.pending) {
      if (!p.heldByAlarm) continue
      p.heldByAlarm = false
      this.arm(p)
    }
  }

  publish (exchange: string, routingKey: string, message: Publishable, opts: PublishOptions): Promise<void> {
    // Not an async function: a reply to a waiting client (no confirm) is one plain promise, no second wrapper.
    return opts.confirm ? this.publishConfirmed(exchange, routingKey, message) : this.send(exchange, routingKey, message, false)
  }

  private async publishConfirmed (exchange: string, routingKey: string, message: Publishable): Promise<void> {
    const mandatory: Publishable = { content: message.content, options: { ...message.options, mandatory: true } }
    try {
      await this.send(exchange, routingKey, mandatory, true)
    } catch (err) {
      const { redeclare } = this.hooks
      const conn = this.conn
      if (!(err instanceof PublishError) || !(err.cause instanceof UnroutableError) || redeclare === undefined || conn === null) throw err
      this.logger.warn({ exchange, routingKey }, 'a message came back unroutable: declaring the queues again and publishing it once more')
      try {
        await redeclare(conn)
      } catch (declareErr) {
        throw new PublishError(`cannot declare the queues again: ${(declareErr as Error).message}`, { cause: declareErr })
      }
      await this.send(exchange, routingKey, mandatory, true)
    }
  }

  private send (exchange: string, routingKey: string, message: Publishable, confirm: boolean): Promise<void> {
    const ch = this.ch
    if (ch === null) return this.whenReady().then(() => this.send(exchange, routingKey, message, confirm))
    if (!confirm) {
      try {
        publish(ch, exchange, routingKey, message)
      } catch (err) {
        return Promise.reject(new PublishError((err as Error).message, { cause: err }))
      }
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      const entry: Pending = {
        exchange,
        routingKey,
        correlationId: message.options.correlationId,
        returned: false,
        timer: null,
        heldByAlarm: false,
        fail: (err) => {
          this.forget(entry)
          reject(err)
        },
      }
      try {
        publish(ch, exchange, routingKey, message, (err: unknown) => {
          this.forget(entry)
          if (err !== null && err !== undefined) reject(new PublishError('the broker did not take the message', { cause: confirmError(ch, err) }))
          else if (entry.returned) reject(new PublishError(`no queue took the message (exchange '${exchange}', routing key '${routingKey}')`, { cause: new UnroutableError(routingKey) }))
          else resolve()
        })
      } catch (err) {
        // A header table that cannot be encoded (over 64 KiB) throws before anything is sent.
        reject(new PublishError((err as Error).message, { cause: err }))
        return
      }
      this.pending.push(entry)
      this.arm(entry)
    })
  }

  private arm (p: Pending): void {
    p.timer = setTimeout(() => {
      p.timer = null
      if (this.blocked) {
        p.heldByAlarm = true
        return
      }
      p.fail(new PublishError('no confirm from the broker in time'))
    }, CONFIRM_TIMEOUT_MS)
  }

  private forget (p: Pending): void {
    if (p.timer !== null) clearTimeout(p.timer)
    p.timer = null
    const i = this.pending.indexOf(p)
    if (i !== -1) this.pending.splice(i, 1)
  }

  /** A return arrives before the confirm of the same message: mark the oldest publish it matches. */
  private onReturn (msg: Message): void {
    const { exchange, routingKey } = msg.fields
    const id: unknown = msg.properties.correlationId
    const p = this.pending.find((x) => !x.returned && x.exchange === exchange && x.routingKey === routingKey && x.correlationId === id)
    if (p !== undefined) p.returned = true
  }

  async close (): Promise<void> {
    const ch = this.ch
    this.ch = null
    if (ch !== null) await ch.close().catch(() => {})
  }

  private whenReady (): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onReady)
        reject(new PublishError('no publishing channel to the broker'))
      }, WAIT_FOR_CHANNEL_MS)
      const onReady = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.waiters.push(onReady)
    })
  }

  private async open (conn: ChannelModel): Promise<void> {
    const ch = await conn.createConfirmChannel()
    watchConfirms(ch)
    ch.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'publishing channel error'))
    ch.on('return', (msg: Message) => this.onReturn(msg))
    ch.on('close', () => {
      if (this.ch !== ch) return
      this.ch = null
      // A channel-level error (e.g. an oversized message) closes only this
      // channel; reopen it while the connection lives.
      if (this.conn === conn) this.reopenLater(conn, 50)
    })
    this.ch = ch
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }

  private reopenLater (conn: ChannelModel, delayMs: number): void {
    setTimeout(() => {
      if (this.conn !== conn || this.ch !== null) return
      this.open(conn).catch(() => this.reopenLater(conn, Math.min(delayMs * 2, 2000)))
    }, delayMs).unref()
  }
}
