// Settles deliveries on the one channel they arrived on. Acks gathered in one
// event-loop turn go out together: every tag below the lowest still-unsettled
// tag is covered by a single `multiple` ack, the rest one by one. Delivery
// tags belong to their channel: once it closes, its acker drops every settle
// (the broker has already put those messages back), so an old tag is never
// sent on a new channel, where it would ack the wrong message or close it.
import type { Channel, Message } from 'amqplib'

export class Acker {
  /** Delivered and not yet settled. */
  private readonly outstanding = new Set<number>()
  private pendingAcks: number[] = []
  private scheduled = false
  private closed = false

  constructor (private readonly channel: Channel) {
    channel.once('close', () => {
      this.closed = true
      this.outstanding.clear()
      this.pendingAcks = []
    })
  }

  get alive (): boolean {
    return !this.closed
  }

  get unsettled (): number {
    return this.outstanding.size
  }

  track (tag: number): void {
    if (!this.closed) this.outstanding.add(tag)
  }

  /** False when the delivery's channel is gone: the message will be redelivered. */
  ack (tag: number): boolean {
    if (this.closed || !this.outstanding.has(tag)) return false
    this.pendingAcks.push(tag)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(flush, this)
    }
    return true
  }

  /** Returns the message to the queue (counted as a delivery by quorum queues before RabbitMQ 4.3). */
  requeue (tag: number): boolean {
    return this.settleNow(tag, true)
  }

  reject (tag: number): boolean {
    return this.settleNow(tag, false)
  }

  flush (): void {
    this.scheduled = false
    if (this.closed || this.pendingAcks.length === 0) return
    const tags = this.pendingAcks.sort((a, b) => a - b)
    this.pendingAcks = []
    for (const t of tags) this.outstanding.delete(t)
    let lowestOpen = Infinity
    for (const t of this.outstanding) if (t < lowestOpen) lowestOpen = t
    let i = 0
    while (i < tags.length && (tags[i] as number) < lowestOpen) i++
    try {
      if (i > 0) this.channel.ack(message(tags[i - 1] as number), i > 1)
      for (; i < tags.length; i++) this.channel.ack(message(tags[i] as number), false)
    } catch {
      // The channel closed under us; its deliveries are back in the queue.
    }
  }

  private settleNow (tag: number, requeue: boolean): boolean {
    if (this.closed || !this.outstanding.has(tag)) return false
    this.outstanding.delete(tag)
    try {
      this.channel.nack(message(tag), false, requeue)
      return true
    } catch {
      return false
    }
  }
}

function flush (acker: Acker): void {
  acker.flush()
}

// amqplib's ack/nack read only fields.deliveryTag.
function message (deliveryTag: number): Message {
  return { fields: { deliveryTag } } as unknown as Message
}
