// The consuming channel of the dequeuer. It follows the gate: consuming while
// nothing pauses it, cancelled otherwise, so a paused dequeuer leaves queued
// messages to healthy replicas. Consume and cancel calls are serialized, and
// each delivery is bound to the acker of the channel it arrived on.
//
// The broker can take consumption away while the connection lives: it closes
// the channel (a consumer timeout, a 406 from an ack, any channel error) or
// cancels the consumer (the queue was deleted; a consumer timeout on 4.3+
// quorum queues). Either way the consumer declares the queue again, opens a
// channel if it lost its own and consumes, with backoff, until it succeeds;
// `problem` says why it is not consuming meanwhile (readiness), and
// `problemForMs` how long that has lasted (liveness).
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { classify } from '../amqp/errors'
import { Acker } from './acker'
import type { Gate } from './gate'

export interface Delivery {
  readonly msg: ConsumeMessage
  readonly acker: Acker
  readonly receivedAt: number
  /** The delivery's spans while tracing is on (tracing/dequeuer.ts's, opaque to the rest); undefined otherwise. */
  trace: unknown
}

export interface ConsumerOptions {
  readonly queue: string
  readonly prefetch: number
  readonly gate: Gate
  readonly logger: Logger
  readonly onDelivery: (d: Delivery) => void
  /** Declares the queue (and what hangs off it) again: after a cancel it may be gone. */
  readonly redeclare: (conn: ChannelModel) => Promise<void>
  /** Backoff between attempts to consume again: the first delay, doubled per failure up to the cap. */
  readonly backoff: { readonly initialMs: number, readonly maxMs: number }
  /** A consumer is back after the broker took it away. */
  readonly onRecovered?: () => void
}

export class Consumer {
  private conn: ChannelModel | null = null
  private ch: Channel | null = null
  private acker: Acker | null = null
  private tag: string | null = null
  private chain: Promise<void> = Promise.resolve()
  private prefetch: number
  private lost: { why: string, since: number, attempts: number } | null = null
  private timer: NodeJS.Timeout | null = null

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

  /** Why the broker's consumer is gone and being restored, or null. */
  get problem (): string | null {
    if (this.lost === null) return null
    return `${this.lost.why}; consuming again (attempt ${this.lost.attempts + 1})`
  }

  /** How long consumption has been lost to the broker (0 when it is not). */
  problemForMs (now = Date.now()): number {
    return this.lost === null ? 0 : now - this.lost.since
  }

  async attach (conn: ChannelModel): Promise<void> {
    this.conn = conn
    await this.openChannel(conn)
  }

  /** Sends acks still waiting for their batch, then closes the channel (close-ok means the broker has them). */
  async close (): Promise<void> {
    const ch = this.ch
    this.acker?.flush()
    this.detach()
    if (ch !== null) await ch.close().catch(() => {})
  }

  /** The connection is gone (or closing): nothing to restore on it; the connection's own reconnect takes over. */
  detach (): void {
    this.conn = null
    this.ch = null
    this.acker = null
    this.tag = null
    this.lost = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** Brings the broker in line with the gate. */
  reconcile (): Promise<void> {
    this.chain = this.chain.then(() => this.step()).catch((err: Error) => {
      this.opts.logger.warn({ err: err.message, code: classify(err).code }, 'cannot change consumer state')
    })
    return this.chain
  }

  /**
   * Changes the prefetch (1 while a suspect may run, or the breaker probes
   * with a real message). RabbitMQ applies a per-consumer prefetch to
   * consumers created after the change, so a new consumer takes over: it is
   * registered before the old one is cancelled, so the queue never goes
   * without a consumer (an enqueuer refuses requests for a queue without
   * one). Resolves once the old consumer's cancel-ok is in, which the broker
   * sends after its last delivery to it. A prefetch of one is exact: the
   * queue counts it itself (a channel-wide limit is not exact; see
   * isolation.ts).
   */
  setPrefetch (n: number): Promise<void> {
    if (n === this.prefetch) return this.chain
    this.prefetch = n
    this.chain = this.chain.then(async () => {
      const ch = this.ch
      if (ch === null) return
      await ch.prefetch(n)
      const old = this.tag
      if (old === null) return // not consuming now: the next consume takes the new prefetch
      this.tag = null
      await this.step()
      if (this.ch === ch) await ch.cancel(old)
    }).catch((err: Error) => {
      this.opts.logger.warn({ err: err.message }, 'cannot change the prefetch')
    })
    return this.chain
  }

  /** True when `d` came to the consumer of prefetch one that is consuming now: nothing else can arrive beside it. */
  deliveredOneAtATime (d: Delivery): boolean {
    return this.prefetch === 1 && this.tag !== null && d.msg.fields.consumerTag === this.tag
  }

  /**
   * Resolves once the broker has processed every ack given so far on the
   * consuming channel (a passive declare of the queue: its answer comes
   * after them). Acks are not confirmed in AMQP, and the acker gathers them
   * for the next turn of the event loop: they are sent first, so that the
   * declare follows them.
   */
  async acksReceived (): Promise<void> {
    const ch = this.ch
    if (ch === null) return
    this.acker?.flush()
    await ch.checkQueue(this.opts.queue).then(() => {}, () => {})
  }

  private async openChannel (conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel()
    let closeError: Error | null = null
    ch.on('error', (err: Error) => {
      closeError = err
      this.opts.logger.warn({ err: err.message, code: classify(err).code }, 'consuming channel error')
    })
    ch.on('close', () => {
      if (this.ch !== ch) return
      this.ch = null
      this.acker = null
      this.tag = null
      // A connection that is going down closes its channels first; detach() then cancels this.
      const code = closeError === null ? undefined : classify(closeError).code
      this.takenAway(`the broker closed the consuming channel${code === undefined ? '' : ` (${code})`}`)
    })
    const prefetch = this.prefetch
    await ch.prefetch(prefetch)
    this.ch = ch
    this.acker = new Acker(ch)
    this.tag = null
    // Careful mode or the breaker may have changed it while the channel opened (outside the chain): their chained
    // steps found no channel, so the new one takes the value now.
    if (this.prefetch !== prefetch) await ch.prefetch(this.prefetch)
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
      // Throwing here would take the whole connection down.
      if (this.acker !== acker) return
      this.tag = null
      this.opts.logger.warn({ queue: this.opts.queue }, 'the broker cancelled the consumer (queue deleted?); declaring it again')
      this.takenAway('the broker cancelled the consumer')
      return
    }
    acker.track(msg.fields.deliveryTag)
    this.opts.onDelivery({ msg, acker, receivedAt: performance.now(), trace: undefined })
  }

  private takenAway (why: string): void {
    if (this.conn === null) return
    if (this.lost === null) this.lost = { why, since: Date.now(), attempts: 0 }
    else this.lost.why = why
    this.schedule()
  }

  private schedule (): void {
    if (this.timer !== null || this.lost === null) return
    const { initialMs, maxMs } = this.opts.backoff
    const cap = Math.min(maxMs, initialMs * 2 ** Math.min(this.lost.attempts, 20))
    // Half fixed, half jitter: prompt, yet replicas that lost their consumers together do not retry in lockstep.
    const delay = Math.round(cap / 2 + Math.random() * cap / 2)
    this.timer = setTimeout(() => {
      this.timer = null
      void this.restore()
    }, delay)
    this.timer.unref()
  }

  private async restore (): Promise<void> {
    const conn = this.conn
    const lost = this.lost
    if (conn === null || lost === null) return
    try {
      await this.opts.redeclare(conn)
      if (this.conn !== conn) return
      if (this.ch === null) await this.openChannel(conn)
      await this.reconcile()
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message, code: classify(err).code, attempt: lost.attempts + 1, lostForMs: this.problemForMs() }, 'cannot consume again yet')
    }
    if (this.conn !== conn || this.lost !== lost) return
    if (this.ch !== null && (this.tag !== null || !this.opts.gate.open)) {
      this.opts.logger.info({ queue: this.opts.queue, why: lost.why, afterMs: this.problemForMs(), attempts: lost.attempts + 1 }, 'consuming again after the broker took the consumer away')
      this.lost = null
      this.opts.onRecovered?.()
      return
    }
    lost.attempts++
    this.schedule()
  }
}
