// The enqueuer's publishing channels (ENQUEUER_POOL_SIZE of them) on its one
// broker connection. Requests are spread round-robin over the channels that
// are open and not saturated; a channel that closes while the connection is
// up (a channel-level error) is reopened in place, without touching the
// connection or the other channels' waiting requests.
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import { RpcChannel } from './rpc-channel'

export class RpcPool {
  private readonly channels: RpcChannel[]
  private next = 0
  private conn: ChannelModel | null = null

  constructor (size: number, private readonly logger: Logger, onLateReply: () => void) {
    this.channels = Array.from({ length: size }, () => new RpcChannel(logger, onLateReply, (c) => this.reopenLater(c, 50)))
  }

  /** Opens every channel on a new connection; part of the connection's setup. */
  async attach (conn: ChannelModel): Promise<void> {
    this.conn = conn
    await Promise.all(this.channels.map((c) => c.open(conn)))
  }

  detach (): void {
    this.conn = null
  }

  /** A channel that can take a publish now, or null (all saturated or closed). */
  pick (): RpcChannel | null {
    const n = this.channels.length
    for (let i = 0; i < n; i++) {
      const c = this.channels[(this.next + i) % n] as RpcChannel
      if (c.writable) {
        this.next = (this.next + i + 1) % n
        return c
      }
    }
    return null
  }

  get ready (): boolean {
    return this.channels.some((c) => c.ready)
  }

  get pendingReplies (): number {
    let total = 0
    for (const c of this.channels) total += c.size
    return total
  }

  shutdown (): void {
    for (const c of this.channels) c.shutdown()
  }

  async close (): Promise<void> {
    this.conn = null
    await Promise.all(this.channels.map((c) => c.close()))
  }

  private reopenLater (channel: RpcChannel, delayMs: number): void {
    const conn = this.conn
    if (conn === null) return
    setTimeout(() => {
      if (this.conn !== conn || channel.ready) return
      channel.open(conn).catch((err: Error) => {
        this.logger.warn({ err: err.message }, 'cannot reopen publishing channel')
        this.reopenLater(channel, Math.min(delayMs * 2, 2000))
      })
    }, delayMs).unref()
  }
}
