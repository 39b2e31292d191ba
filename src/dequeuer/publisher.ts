// The dequeuer's publishing side, on a connection of its own: a broker memory
// alarm blocks publishing connections, and a connection that both publishes
// and consumes would stop receiving too. Replies, retries, requeues and
// dead-letter copies all go through here. Holding no deliveries, this channel
// can be closed by an oversized publish without sending any message back to
// the queue.
import type { ChannelModel, ConfirmChannel } from 'amqplib'
import type { Logger } from 'pino'
import type { Publishable } from '../amqp/wire'
import { confirmError, watchConfirms } from '../amqp/errors'
import { publish } from '../amqp/publish'

export class PublishError extends Error {
  override readonly name = 'PublishError'
}

export interface PublishOptions {
  /** Wait for the broker's confirm (the message is safely queued) before resolving. */
  readonly confirm: boolean
}

/** How long a publish waits for the connection to come back, and for a confirm. */
const WAIT_FOR_CHANNEL_MS = 10000
const CONFIRM_TIMEOUT_MS = 10000

export class Publisher {
  private ch: ConfirmChannel | null = null
  private conn: ChannelModel | null = null
  private waiters: Array<() => void> = []

  constructor (private readonly logger: Logger) {}

  get ready (): boolean {
    return this.ch !== null
  }

  async attach (conn: ChannelModel): Promise<void> {
    this.conn = conn
    await this.open(conn)
  }

  detach (): void {
    this.conn = null
    this.ch = null
  }

  publish (exchange: string, routingKey: string, message: Publishable, opts: PublishOptions): Promise<void> {
    const ch = this.ch
    if (ch === null) return this.whenReady().then(() => this.publish(exchange, routingKey, message, opts))
    if (!opts.confirm) {
      try {
        publish(ch, exchange, routingKey, message)
      } catch (err) {
        return Promise.reject(new PublishError((err as Error).message, { cause: err }))
      }
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new PublishError('no confirm from the broker in time')), CONFIRM_TIMEOUT_MS)
      try {
        publish(ch, exchange, routingKey, message, (err: unknown) => {
          clearTimeout(timer)
          if (err === null || err === undefined) resolve()
          else reject(new PublishError('the broker did not take the message', { cause: confirmError(ch, err) }))
        })
      } catch (err) {
        // A header table that cannot be encoded (over 64 KiB) throws before anything is sent.
        clearTimeout(timer)
        reject(new PublishError((err as Error).message, { cause: err }))
      }
    })
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
