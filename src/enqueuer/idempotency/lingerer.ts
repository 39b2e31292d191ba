// Collects the reply of a keyed request whose client stopped waiting (504, or
// it hung up). Direct reply-to delivers a reply only to the channel that
// published the request, and only while something there listens for it; so
// the lingerer takes the request's place in that channel's table for the
// grace period (the message's deadline was extended by as much, so the
// dequeuer still runs it and replies). Bounded: one table entry and one timer
// per lingering request, ended by the reply, the grace period or the
// channel's loss (then the claim expires by itself).
import type { ConsumeMessage } from 'amqplib'
import { decodeResponse, type IncomingResponse } from '../../amqp/wire'
import type { RpcChannel, Waiter } from '../rpc-channel'

export class Lingerer implements Waiter {
  readonly listening: boolean
  private timer: NodeJS.Timeout | null = null
  private over = false

  constructor (
    readonly correlationId: string,
    private readonly channel: RpcChannel,
    graceMs: number,
    private readonly onReplyDecoded: (reply: IncomingResponse) => void,
    /** The broker returned the message: it never ran. */
    private readonly onNeverDelivered: () => void,
    private readonly onOver: () => void,
  ) {
    this.listening = channel.listen(this)
    if (!this.listening) {
      this.over = true
      return
    }
    this.timer = setTimeout(() => {
      this.channel.forget(this.correlationId)
      this.end()
    }, graceMs)
    this.timer.unref()
  }

  onReply (msg: ConsumeMessage): void {
    this.end()
    let reply: IncomingResponse
    try {
      reply = decodeResponse(msg)
    } catch {
      // Thrown here it would close the channel every waiting request shares; the claim expires by itself instead.
      return
    }
    this.onReplyDecoded(reply)
  }

  onReturned (): void {
    this.end()
    this.onNeverDelivered()
  }

  // A confirm of the publish belongs to the Call; the lingerer only waits for what follows.
  onConfirm (): void {}

  // Handling this reply threw (the channel's guard caught it): nobody waits for it, so the claim expires by itself.
  onBadReply (): void {
    this.end()
  }

  onChannelLost (): void {
    this.end()
  }

  onShutdown (): void {
    this.end()
  }

  private end (): void {
    if (this.over) return
    this.over = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.onOver()
  }
}
