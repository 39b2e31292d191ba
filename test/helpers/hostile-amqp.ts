// A hostile AMQP publisher: writes basic.publish frames byte by byte, so it
// can send header tables amqplib (and relayq's encoder) would refuse or
// overflow on. The frames go into an amqplib confirm channel's own buffer,
// as relayq's publish.ts does, so ordering and confirms are amqplib's.
import type { ConfirmChannel } from 'amqplib'

/** The entries of a header table: `name` holding an array nested `depth` deep (5 bytes a level). */
export function nestedArrayEntries (depth: number, name = 'x-nest'): Buffer {
  const out = Buffer.alloc(1 + name.length + depth * 5)
  out[0] = name.length
  out.write(name, 1, 'latin1')
  const start = 1 + name.length
  for (let level = depth - 1; level >= 0; level--) {
    const at = start + level * 5
    out[at] = 0x41 // A
    out.writeUInt32BE((depth - level - 1) * 5, at + 1)
  }
  return out
}

/** Encodes one table entry with a string value (a normal header next to a hostile one). */
export function stringEntry (name: string, value: string): Buffer {
  const v = Buffer.from(value)
  const out = Buffer.alloc(1 + name.length + 1 + 4 + v.length)
  out[0] = name.length
  out.write(name, 1, 'latin1')
  out[1 + name.length] = 0x53 // S
  out.writeUInt32BE(v.length, 2 + name.length)
  v.copy(out, 6 + name.length)
  return out
}

export interface RawProps {
  readonly correlationId?: string
  readonly replyTo?: string
}

function shortstr (s: string): Buffer {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([b.length]), b])
}

function frame (type: number, channel: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(7)
  head[0] = type
  head.writeUInt16BE(channel, 1)
  head.writeUInt32BE(payload.length, 3)
  return Buffer.concat([head, payload, Buffer.from([0xce])])
}

/** The three frames of a publish to the default exchange, with `entries` as the raw header table. */
export function publishFrames (channel: number, queue: string, entries: Buffer, props: RawProps, body: Buffer): Buffer {
  const method = Buffer.concat([Buffer.from([0, 60, 0, 40, 0, 0]), shortstr(''), shortstr(queue), Buffer.from([0])])
  let flags = 0x2000
  const parts: Buffer[] = []
  const table = Buffer.alloc(4)
  table.writeUInt32BE(entries.length)
  parts.push(table, entries)
  if (props.correlationId !== undefined) { flags |= 0x0400; parts.push(shortstr(props.correlationId)) }
  if (props.replyTo !== undefined) { flags |= 0x0200; parts.push(shortstr(props.replyTo)) }
  const header = Buffer.alloc(14)
  header.writeUInt16BE(60, 0)
  header.writeBigUInt64BE(BigInt(body.length), 4)
  header.writeUInt16BE(flags, 12)
  return Buffer.concat([frame(1, channel, method), frame(2, channel, Buffer.concat([header, ...parts])), frame(3, channel, body)])
}

interface Internals {
  ch: number
  connection: { channels: Array<{ buffer: { write: (b: Buffer) => boolean } }>, sentSinceLastCheck: boolean }
  pushConfirmCallback: (cb: (err: unknown) => void) => void
}

/** Publishes the raw frames on a confirm channel and waits for the broker's confirm. */
export function publishRaw (ch: ConfirmChannel, queue: string, entries: Buffer, props: RawProps = {}, body = Buffer.from('hostile')): Promise<void> {
  const c = ch as unknown as Internals
  return new Promise((resolve, reject) => {
    c.connection.channels[c.ch]!.buffer.write(publishFrames(c.ch, queue, entries, props, body))
    c.connection.sentSinceLastCheck = true
    c.pushConfirmCallback.call(ch, (err) => (err === null || err === undefined ? resolve() : reject(err as Error)))
  })
}
