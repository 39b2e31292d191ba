// amqplib decodes a message's header table recursively while it reads the
// frame, before relayq sees the message: a table nested ~6,000 deep (30 KB,
// which RabbitMQ accepts and redelivers) overflows the stack, and amqplib
// closes the whole connection, again on every redelivery. This guard looks at
// each content-header frame before amqplib decodes it; a header table that is
// malformed or nested deeper than relayq allows is replaced by a one-entry
// table naming the problem (UNDECODABLE_HEADER), so the message arrives as
// usual, with its other properties, and relayq treats it as malformed.
//
// It reaches into amqplib's connection (its `recvFrame`, input buffer and
// stream). installFrameGuard checks their shape first and reports false when
// they are not as expected; test/integration/amqplib-internals.test.ts holds
// the pinned amqplib to it.
import type { ChannelModel } from 'amqplib'
import { H } from './wire'

/** The header relayq puts in place of a header table it would not decode; its value says why. */
const UNDECODABLE_HEADER = H.undecodable

/**
 * Nesting allowed in a header table. RabbitMQ's own deepest (x-death: an
 * array of tables holding arrays) is 3; amqplib's decoder overflows the stack
 * somewhere past 5,000.
 */
export const MAX_TABLE_DEPTH = 32

const FRAME_HEADER = 2
const FRAME_END = 0xce
/** Type, channel, size. */
const FRAME_PREFIX = 7
const CLASS_BASIC = 60
const FLAG_CONTENT_TYPE = 0x8000
const FLAG_CONTENT_ENCODING = 0x4000
const FLAG_HEADERS = 0x2000

interface ConnectionInternals {
  rest: Buffer
  maxFrameSize: number
  recvSinceLastCheck: boolean
  stream: { read: () => Buffer | null }
  recvFrame: () => unknown
}

/** Guards the incoming frames of one connection; false (and nothing changed) when amqplib is not shaped as expected. */
export function installFrameGuard (model: ChannelModel): boolean {
  const conn = (model as unknown as { connection?: Partial<ConnectionInternals> }).connection
  if (conn === undefined || !Buffer.isBuffer(conn.rest) || typeof conn.maxFrameSize !== 'number' ||
    typeof conn.recvSinceLastCheck !== 'boolean' || typeof conn.stream?.read !== 'function' ||
    typeof conn.recvFrame !== 'function') return false
  const self = conn as ConnectionInternals
  const recvFrame = self.recvFrame
  // amqplib's recvFrame reads the stream until a whole frame is buffered, then
  // decodes it. Buffering here first (as it does) lets the guard see the whole
  // frame, and amqplib then finds it complete and decodes it itself.
  self.recvFrame = function guardedRecvFrame () {
    for (;;) {
      const size = frameSize(self.rest, self.maxFrameSize)
      // Over the limit: amqplib reports it.
      if (size === -1) return recvFrame.call(self)
      if (size !== null && self.rest.length >= size) break
      const incoming = self.stream.read()
      if (incoming === null) return false
      self.recvSinceLastCheck = true
      self.rest = self.rest.length === 0 ? incoming : Buffer.concat([self.rest, incoming])
    }
    if (self.rest[0] !== FRAME_HEADER) return recvFrame.call(self)
    const original = self.rest
    const guarded = guardHeaderFrame(original)
    self.rest = guarded
    try {
      return recvFrame.call(self)
    } catch (err) {
      // A frame amqplib did not take (a bad frame end) is a broken connection, as before.
      if (self.rest === guarded) throw err
      // Whatever else amqplib cannot decode in a content header costs this message, not the connection.
      return undecodableHeader(original)
    }
  }
  return true
}

/** Bytes of the frame at the start of `buf`; null when its prefix is incomplete, -1 when it is over the limit (amqplib reports that). */
function frameSize (buf: Buffer, maxFrameSize: number): number | null {
  if (buf.length < FRAME_PREFIX) return null
  const payload = buf.readUInt32BE(3)
  if (maxFrameSize > 0 && payload > maxFrameSize) return -1
  return FRAME_PREFIX + payload + 1
}

/** The decoded content header amqplib would have produced, with the marker for headers and no other property. */
function undecodableHeader (buf: Buffer): unknown {
  const p = FRAME_PREFIX
  return {
    id: buf.readUInt16BE(p),
    channel: buf.readUInt16BE(1),
    size: Number(buf.readBigUInt64BE(p + 4)),
    fields: { headers: { [UNDECODABLE_HEADER]: 'the message properties cannot be decoded' } },
  }
}

/**
 * `buf` starts with a complete content-header frame: returns `buf` itself
 * when its header table is fine (the common case: no allocation), else a
 * buffer with that table replaced by the marker (the frames after it untouched).
 */
export function guardHeaderFrame (buf: Buffer): Buffer {
  const p = FRAME_PREFIX
  const end = p + buf.readUInt32BE(3)
  // class, weight, body size, property flags
  if (end - p < 14 || buf[end] !== FRAME_END || buf.readUInt16BE(p) !== CLASS_BASIC) return buf
  const flags = buf.readUInt16BE(p + 12)
  if ((flags & FLAG_HEADERS) === 0) return buf
  let o = p + 14
  if ((flags & FLAG_CONTENT_TYPE) !== 0) o += 1 + (buf[o] ?? 0)
  if ((flags & FLAG_CONTENT_ENCODING) !== 0) o += 1 + (buf[o] ?? 0)
  if (o + 4 > end) return buf
  const tableEnd = o + 4 + buf.readUInt32BE(o)
  const overrun = tableEnd > end
  const problem = overrun ? 'the header table overruns its frame' : checkTable(buf, o + 4, tableEnd)
  if (problem === null) return buf
  // Past the table, the other properties stay; if the table overran, they are lost with it.
  const head = Buffer.from(buf.subarray(0, o))
  if (overrun) head.writeUInt16BE(flags & (FLAG_CONTENT_TYPE | FLAG_CONTENT_ENCODING | FLAG_HEADERS), p + 12)
  const rest = overrun ? Buffer.alloc(0) : buf.subarray(tableEnd, end)
  const marker = markerTable(problem)
  head.writeUInt32BE(head.length - p + marker.length + rest.length, 3)
  return Buffer.concat([head, marker, rest, buf.subarray(end)])
}

/** A field table (with its length) holding only UNDECODABLE_HEADER. */
function markerTable (reason: string): Buffer {
  const key = Buffer.from(UNDECODABLE_HEADER)
  const value = Buffer.from(reason)
  const t = Buffer.alloc(4 + 1 + key.length + 1 + 4 + value.length)
  let o = t.writeUInt32BE(t.length - 4, 0)
  t[o++] = key.length
  o += key.copy(t, o)
  t[o++] = 0x53 // S
  o = t.writeUInt32BE(value.length, o)
  value.copy(t, o)
  return t
}

/** Bytes after the tag of the fixed-size field types amqplib decodes (by tag byte); -1 for the length-prefixed ones. */
const FIXED = new Int8Array(256).fill(-2)
for (const [tag, size] of Object.entries({ b: 1, B: 1, t: 1, s: 2, u: 2, I: 4, i: 4, f: 4, D: 5, d: 8, l: 8, T: 8, V: 0, S: -1, x: -1, F: -1, A: -1 })) FIXED[tag.charCodeAt(0)] = size
const TAG_TABLE = 0x46 // F
const TAG_ARRAY = 0x41 // A

/**
 * Walks the field table in buf[start, end) without recursion: null when
 * amqplib can decode it within MAX_TABLE_DEPTH levels, else what is wrong.
 */
export function checkTable (buf: Buffer, start = 0, end = buf.length): string | null {
  // Each open table or array: where it ends, and whether its entries have names (tables) or not (arrays).
  const ends = [end]
  const named = [true]
  let o = start
  while (ends.length > 0) {
    const top = ends[ends.length - 1]!
    if (o === top) {
      ends.pop()
      named.pop()
      continue
    }
    if (named[named.length - 1] === true) o += 1 + buf[o]!
    if (o >= top) return 'the header table is malformed'
    const tag = buf[o++]!
    const fixed = FIXED[tag]!
    if (fixed >= 0) o += fixed
    else if (fixed === -1) {
      if (o + 4 > top) return 'the header table is malformed'
      const len = buf.readUInt32BE(o)
      o += 4
      if (tag === TAG_TABLE || tag === TAG_ARRAY) {
        if (ends.length > MAX_TABLE_DEPTH) return `the header table is nested deeper than ${MAX_TABLE_DEPTH} levels`
        if (o + len > top) return 'the header table is malformed'
        ends.push(o + len)
        named.push(tag === TAG_TABLE)
        continue
      }
      o += len
    } else return 'the header table has an unknown field type'
    if (o > top) return 'the header table is malformed'
  }
  return null
}
