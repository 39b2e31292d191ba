// The consuming channel of the dequeuer. It follows the gate: consuming while
// nothing pauses it, cancelled otherwise, so a paused dequeuer leaves queued
// messages to healthy replicas. Consume and cancel calls are serialized, and
// each delivery is bound to the acker of the channel it arrived on.
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { Acker } from './acker'
import type { Gate } from './gate'

export interface Delivery {
  readonly msg: ConsumeMessage
  readonly acker: Acker
  readonly receivedAt: number
}

export interface ConsumerOptions {
  readonly queue: string
  readonly prefetch: number
  readonly gate: Gate
  readonly logger: Logger
  readonly onDelivery: (d: Delivery) => void
  /** The broker cancelled the consumer (queue deleted or consumer timeout). */
  readonly onCancelled: () => void
}

export class Consumer {
  private ch: Channel | null = null
  private acker: Acker | null = null
  private tag: string | null = null
  private chain: Promise<void> = Promise.resolve()
  private prefetch: number
  private channelLimit = 0

  constructor (private readonly opts: ConsumerOptions) {
    this.prefetch = opts.prefetch
  }

  /** True while a consumer is registered with the broker. */
  get consuming (): boolean {
    return this.tag !== null
  }

  get currentPrefetch (): number {
    return this.prefetch
  }

  get unsettled (): number {
    return this.acker?.unsettled ?? 0
  }

  async attach (conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel()
    ch.on('error', (err: Error) => this.opts.logger.warn({ err: err.message }, 'consuming channel error'))
    ch.on('close', () => {
      if (this.ch !== ch) return
      this.ch = null
      this.acker = null
      this.tag = null
    })
    await ch.prefetch(this.prefetch)
    if (this.channelLimit > 0) await ch.prefetch(this.channelLimit, true)
    this.ch = ch
    this.acker = new Acker(ch)
    this.tag = null
  }

  /** Sends acks still waiting for their batch, then closes the channel (close-ok means the broker has them). */
  async close (): Promise<void> {
    const ch = this.ch
    this.acker?.flush()
    this.detach()
    if (ch !== null) await ch.close().catch(() => {})
  }

  detach (): void {
    this.ch = null
    this.acker = null
    this.tag = null
  }

  /** Brings the broker in line with the gate. */
  reconcile (): Promise<void> {
    this.chain = this.chain.then(() => this.step()).catch((err: Error) => {
      this.opts.logger.warn({ err: err.message }, 'cannot change consumer state')
    })
    return this.chain
  }

  /**
   * Changes the prefetch (1 while the breaker probes with a real message).
   * RabbitMQ applies a per-consumer prefetch to consumers created after the
   * change, so a running consumer is cancelled and started again.
   */
  setPrefetch (n: number): Promise<void> {
    if (n === this.prefetch) return Promise.resolve()
    this.prefetch = n
    this.chain = this.chain.then(async () => {
      const ch = this.ch
      if (ch === null) return
      if (this.tag !== null) {
        const tag = this.tag
        this.tag = null
        await ch.cancel(tag)
      }
      await ch.prefetch(n)
      await this.step()
    }).catch((err: Error) => {
      this.opts.logger.warn({ err: err.message }, 'cannot change the prefetch')
    })
    return this.chain
  }

  /**
   * A limit on unacked deliveries for the whole channel, beside the
   * consumer's prefetch (0: none). Unlike the prefetch, the broker applies it
   * to the running consumer at once, so nothing is cancelled.
   */
  limitChannel (n: number): Promise<void> {
    this.channelLimit = n
    this.chain = this.chain.then(async () => {
      await this.ch?.prefetch(n, true)
    }).catch((err: Error) => {
      this.opts.logger.warn({ err: err.message }, 'cannot change the channel limit')
    })
    return this.chain
  }

  private async step (): Promise<void> {
    const ch = this.ch
    const acker = this.acker
    if (ch === null || acker === null) return
    const want = this.opts.gate.open
    if (want && this.tag === null) {
      const ok = await ch.consume(this.opts.queue, (msg) => this.onMessage(msg, acker), { noAck: false })
      if (this.ch === ch) this.tag = ok.consumerTag
      this.opts.logger.info({ queue: this.opts.queue }, 'consuming')
    } else if (!want && this.tag !== null) {
      const tag = this.tag
      this.tag = null
      await ch.cancel(tag)
      this.opts.logger.info({ queue: this.opts.queue, reasons: this.opts.gate.describe() }, 'stopped consuming')
    }
  }

  private onMessage (msg: ConsumeMessage | null, acker: Acker): void {
    if (msg === null) {
      // The broker cancelled us (queue deleted, or a 4.3+ consumer timeout).
      // Throwing here would take the whole connection down; just record it.
      this.tag = null
      this.opts.onCancelled()
      return
    }
    acker.track(msg.fields.deliveryTag)
    this.opts.onDelivery({ msg, acker, receivedAt: performance.now() })
  }
}
