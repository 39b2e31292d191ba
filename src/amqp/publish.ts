// The hot-path publish: relayq's own frame encoder (frames.ts) in place of
// amqplib's, writing into the same per-channel buffer amqplib writes to, so
// frame order, flow control ('drain') and confirm numbering are amqplib's own.
// amqplib's encoder took about 10 µs a message, relayq's about 2.5 µs.
//
// This reaches into amqplib internals. They are checked once per channel;
// a channel that does not look as expected (another amqplib version) is
// published to through amqplib's public API instead. publish.test.ts and
// amqplib-internals.test.ts fail when the pinned amqplib stops matching.
import type { Channel, ConfirmChannel } from 'amqplib'
import type { Writable } from 'node:stream'
import { encodePublish, NotEncodedHere } from './frames'
import type { Publishable } from './wire'

interface ChannelInternals {
  ch: number
  connection: {
    frameMax: number
    sentSinceLastCheck: boolean
    channels: Array<{ buffer: Writable } | null | undefined>
  }
  pushConfirmCallback: (cb: ((err: unknown) => void) | false) => void
}

/** Per channel: false when published to through amqplib's API; else whether it is a confirm channel. */
const checked = new WeakMap<Channel, false | { confirms: boolean }>()

export type ConfirmCallback = (err: unknown) => void

/**
 * Publishes like amqplib's `publish` (false means the channel is saturated:
 * wait for its 'drain'); with `onConfirm` the channel must be a confirm
 * channel. Throws, having sent nothing, when the message cannot be encoded
 * (RangeError) or the channel is closed.
 */
export function publish (ch: Channel | ConfirmChannel, exchange: string, routingKey: string, message: Publishable, onConfirm?: ConfirmCallback): boolean {
  const shape = usable(ch)
  if (shape === false) return viaAmqplib(ch, exchange, routingKey, message, onConfirm)
  const internals = ch as unknown as ChannelInternals
  const conn = internals.connection
  let frames: Buffer[]
  try {
    frames = encodePublish(internals.ch, exchange, routingKey, message.options, message.content, conn.frameMax)
  } catch (err) {
    if (err instanceof NotEncodedHere) return viaAmqplib(ch, exchange, routingKey, message, onConfirm)
    throw err
  }
  const buffer = conn.channels[internals.ch]!.buffer
  conn.sentSinceLastCheck = true
  let accepted = true
  for (const frame of frames) accepted = buffer.write(frame)
  // The broker confirms every message on a confirm channel, and amqplib pairs each confirm with the callback in the
  // same place in its list: a publish without a callback holds its place too (with false, as amqplib's own does),
  // or every later callback would run at an earlier message's confirm, before its own return or nack.
  if (onConfirm !== undefined || shape.confirms) internals.pushConfirmCallback.call(ch, onConfirm ?? false)
  return accepted
}

function viaAmqplib (ch: Channel | ConfirmChannel, exchange: string, routingKey: string, message: Publishable, onConfirm?: ConfirmCallback): boolean {
  return onConfirm === undefined
    ? ch.publish(exchange, routingKey, message.content, message.options)
    : (ch as ConfirmChannel).publish(exchange, routingKey, message.content, message.options, onConfirm)
}

/** Open and shaped as expected, and whether it confirms; false leaves it to amqplib (a closed channel too, so its error is the usual one). */
function usable (ch: Channel): false | { confirms: boolean } {
  let shape = checked.get(ch)
  if (shape === undefined) {
    // amqplib's ConfirmChannel is the class with waitForConfirms.
    shape = looksAsExpected(ch as unknown as Partial<ChannelInternals>) && { confirms: typeof (ch as Partial<ConfirmChannel>).waitForConfirms === 'function' }
    checked.set(ch, shape)
  }
  // amqplib marks a closed channel by replacing its send methods on the instance.
  return Object.hasOwn(ch, 'sendMessage') ? false : shape
}

function looksAsExpected (ch: Partial<ChannelInternals>): boolean {
  const conn = ch.connection
  return typeof ch.ch === 'number' &&
    typeof ch.pushConfirmCallback === 'function' &&
    conn !== undefined &&
    typeof conn.frameMax === 'number' && conn.frameMax > 8 &&
    typeof conn.sentSinceLastCheck === 'boolean' &&
    typeof conn.channels?.[ch.ch]?.buffer?.write === 'function'
}

/** Whether `publish` encodes for this channel itself; a test holds the pinned amqplib to it. */
export function encodesItself (ch: Channel): boolean {
  return usable(ch) !== false
}
