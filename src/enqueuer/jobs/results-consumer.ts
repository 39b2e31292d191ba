// The results queue's consumer. Declared and consumed as part of each broker
// connection's setup, and again, with backoff, whenever the broker takes it
// away while the connection lives: a deleted queue (the broker cancels the
// consumer) or a channel the broker closed (a 406, say). Until then results
// wait in (or, while the queue is gone, miss) the queue; once it is back,
// pending jobs complete. A queue that cannot be declared or consumed at all
// (on a cluster: a classic queue whose node is down) never fails the
// connection's setup: request/reply goes on, and only new jobs are refused
// until the queue is back.
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'

const FIRST_RETRY_MS = 500
const MAX_RETRY_MS = 30000

export class ResultsConsumer {
  private conn: ChannelModel | null = null
  private channel: Channel | null = null
  private timer: NodeJS.Timeout | null = null
  private failures = 0
  private closed = false

  constructor (
    private readonly queue: string,
    private readonly args: Record<string, string | number>,
    private readonly logger: Logger,
    private readonly onMessage: (ch: Channel, msg: ConsumeMessage) => void,
  ) {}

  get consuming (): boolean {
    return this.channel !== null
  }

  /** Part of a connection's setup; a failure is retried here, with backoff, and never fails the setup. */
  async attach (conn: ChannelModel): Promise<void> {
    this.conn = conn
    this.stopTimer()
    try {
      await this.open(conn)
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, queue: this.queue }, 'cannot consume the results queue; jobs are refused until it is back')
      this.reopenLater(conn)
    }
  }

  /** The connection went away; its next setup attaches again. */
  detach (): void {
    this.conn = null
    this.channel = null
    this.stopTimer()
  }

  async close (): Promise<void> {
    this.closed = true
    const ch = this.channel
    this.detach()
    if (ch !== null) await ch.close().catch(() => {})
  }

  private async open (conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel()
    ch.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'results channel error'))
    ch.on('close', () => {
      // Only the live channel (or one that never became live) brings recovery; a stale one would add a consumer.
      if (this.channel !== null && this.channel !== ch) return
      this.channel = null
      this.reopenLater(conn)
    })
    await ch.assertQueue(this.queue, { durable: true, arguments: this.args })
    await ch.prefetch(50)
    await ch.consume(this.queue, (msg) => {
      if (msg !== null) {
        this.onMessage(ch, msg)
        return
      }
      this.logger.warn({ queue: this.queue }, 'the broker cancelled the results queue consumer (queue deleted?); declaring it again')
      // The close handler recovers: a new channel that declares the queue and consumes it.
      ch.close().catch(() => {})
    }, { noAck: false })
    this.channel = ch
    this.failures = 0
  }

  private reopenLater (conn: ChannelModel): void {
    if (this.closed || this.conn !== conn || this.timer !== null) return
    const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.failures++)
    this.timer = setTimeout(() => {
      this.timer = null
      if (this.conn !== conn || this.channel !== null) return
      this.open(conn).catch((err: Error) => {
        this.logger.warn({ err: err.message, queue: this.queue }, 'cannot consume the results queue yet; retrying')
        this.reopenLater(conn)
      })
    }, delay)
  }

  private stopTimer (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}
