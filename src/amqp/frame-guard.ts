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
    const guarded = guardHeaderFrame(self.rest)
    self.rest = guarded.buffer
    try {
      return recvFrame.call(self)
    } catch (err) {
      // A frame amqplib did not take (a bad frame end) is a broken connection, as before.
      if (self.rest === guarded.buffer) throw err
      // Whatever else amqplib cannot decode in a content header costs this message, not the connection.
      return { id: guarded.classId, channel: guarded.channel, size: guarded.bodySize, fields: { headers: { [UNDECODABLE_HEADER]: 'the message properties cannot be decoded' } } }
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

interface Guarded { buffer: Buffer, classId: number, channel: number, bodySize: number }

/**
 * `buf` starts with a complete content-header frame: returns the buffer with
 * that frame's header table replaced when it is malformed or too deep (the
 * frames after it untouched).
 */
export function guardHeaderFrame (buf: Buffer): Guarded {
  const end = FRAME_PREFIX + buf.readUInt32BE(3)
  const channel = buf.readUInt16BE(1)
  const payload = buf.subarray(FRAME_PREFIX, end)
  const unchanged = { buffer: buf, channel, classId: payload.length >= 2 ? payload.readUInt16BE(0) : 0, bodySize: 0 }
  // class, weight, body size, property flags
  if (payload.length < 14 || buf[end] !== FRAME_END) return unchanged
  unchanged.bodySize = Number(payload.readBigUInt64BE(4))
  if (unchanged.classId !== CLASS_BASIC) return unchanged
  const flags = payload.readUInt16BE(12)
  if ((flags & FLAG_HEADERS) === 0) return unchanged
  let o = 14
  if ((flags & FLAG_CONTENT_TYPE) !== 0) o += 1 + (payload[o] ?? 0)
  if ((flags & FLAG_CONTENT_ENCODING) !== 0) o += 1 + (payload[o] ?? 0)
  if (o + 4 > payload.length) return unchanged
  const tableLen = payload.readUInt32BE(o)
  const tableEnd = o + 4 + tableLen
  const problem = tableEnd > payload.length ? 'the header table overruns its frame' : checkTable(payload.subarray(o + 4, tableEnd))
  if (problem === null) return unchanged
  const marker = markerTable(problem)
  // Past the table, the other properties stay; if the table overran, they are lost with it.
  const rest = tableEnd > payload.length ? Buffer.alloc(0) : payload.subarray(tableEnd)
  const newFlags = tableEnd > payload.length ? flags & (FLAG_CONTENT_TYPE | FLAG_CONTENT_ENCODING | FLAG_HEADERS) : flags
  const head = Buffer.from(payload.subarray(0, o))
  head.writeUInt16BE(newFlags, 12)
  const newPayload = Buffer.concat([head, marker, rest])
  const prefix = Buffer.alloc(FRAME_PREFIX)
  prefix[0] = FRAME_HEADER
  prefix.writeUInt16BE(channel, 1)
  prefix.writeUInt32BE(newPayload.length, 3)
  return { ...unchanged, buffer: Buffer.concat([prefix, newPayload, Buffer.from([FRAME_END]), buf.subarray(end + 1)]) }
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

/** Fixed sizes of the field value types amqplib decodes. */
const FIXED: Record<string, number> = { b: 1, B: 1, t: 1, s: 2, u: 2, I: 4, i: 4, f: 4, D: 5, d: 8, l: 8, T: 8, V: 0 }

/**
 * Walks a field table without recursion: null when amqplib can decode it
 * within MAX_TABLE_DEPTH levels, else what is wrong with it.
 */
export function checkTable (table: Buffer): string | null {
  // Each open table or array: where it ends, and whether its entries have names (tables) or not (arrays).
  const open: Array<{ end: number, named: boolean }> = [{ end: table.length, named: true }]
  let o = 0
  while (open.length > 0) {
    const top = open[open.length - 1]!
    if (o === top.end) {
      open.pop()
      continue
    }
    if (top.named) o += 1 + table[o]!
    if (o >= top.end) return 'the header table is malformed'
    const tag = String.fromCharCode(table[o++]!)
    const fixed = FIXED[tag]
    if (fixed !== undefined) o += fixed
    else if (tag === 'S' || tag === 'x' || tag === 'F' || tag === 'A') {
      if (o + 4 > top.end) return 'the header table is malformed'
      const len = table.readUInt32BE(o)
      o += 4
      if (tag === 'F' || tag === 'A') {
        if (open.length > MAX_TABLE_DEPTH) return `the header table is nested deeper than ${MAX_TABLE_DEPTH} levels`
        if (o + len > top.end) return 'the header table is malformed'
        open.push({ end: o + len, named: tag === 'F' })
        continue
      }
      o += len
    } else return 'the header table has an unknown field type'
    if (o > top.end) return 'the header table is malformed'
  }
  return null
}
