// basic.publish frames, encoded here instead of by amqplib. Profiles put
// amqplib's publish path (its generic property and field-table encoder, a
// per-channel stream, a muxer) at 15-19% of each relay process's busy time;
// this encoder writes the method, content-header and body frames of one
// publish into one buffer in a single pass. A unit test checks its bytes are
// amqplib's, for every property and field type relayq sends.
import type { Options } from 'amqplib'

const FRAME_METHOD = 1
const FRAME_HEADER = 2
const FRAME_BODY = 3
const FRAME_END = 0xce
const CLASS_BASIC = 60
const METHOD_PUBLISH = 40
/** Frame type, channel, size, and the end octet. */
const FRAME_OVERHEAD = 8
/** Bodies up to this size are copied into the frame buffer; larger ones are written as slices. */
const COPY_LIMIT = 64 * 1024

// Field tables are encoded into this scratch buffer; amqplib's has the same size, and a table
// that does not fit fails the same way (a RangeError before anything is written).
const scratch = Buffer.allocUnsafe(65536)

/** The frames of one publish: one buffer for small bodies, or several (header, then body frames sliced from the body). */
export function encodePublish (channel: number, exchange: string, routingKey: string, options: Options.Publish, body: Buffer, frameMax: number): Buffer[] {
  const props = encodeProperties(options)
  const exchangeLen = Buffer.byteLength(exchange)
  const keyLen = Buffer.byteLength(routingKey)
  if (exchangeLen > 255 || keyLen > 255) throw new RangeError('exchange or routing key longer than 255 bytes')
  const methodPayload = 4 + 2 + 1 + exchangeLen + 1 + keyLen + 1
  const headerPayload = 2 + 2 + 8 + props.length
  const maxBody = frameMax - FRAME_OVERHEAD
  const bodyFrames = body.length === 0 ? 0 : Math.ceil(body.length / maxBody)
  const head = FRAME_OVERHEAD + methodPayload + FRAME_OVERHEAD + headerPayload
  const copyBody = body.length <= COPY_LIMIT
  const out = Buffer.allocUnsafe(head + (copyBody ? body.length + bodyFrames * FRAME_OVERHEAD : 0))
  let o = 0
  // method frame
  out[o++] = FRAME_METHOD
  o = out.writeUInt16BE(channel, o)
  o = out.writeUInt32BE(methodPayload, o)
  o = out.writeUInt16BE(CLASS_BASIC, o)
  o = out.writeUInt16BE(METHOD_PUBLISH, o)
  o = out.writeUInt16BE(0, o) // reserved (ticket)
  out[o++] = exchangeLen
  o += out.write(exchange, o, 'utf8')
  out[o++] = keyLen
  o += out.write(routingKey, o, 'utf8')
  out[o++] = options.mandatory === true ? 1 : 0 // bit 0 mandatory; immediate is never set
  out[o++] = FRAME_END
  // content header frame
  out[o++] = FRAME_HEADER
  o = out.writeUInt16BE(channel, o)
  o = out.writeUInt32BE(headerPayload, o)
  o = out.writeUInt16BE(CLASS_BASIC, o)
  o = out.writeUInt16BE(0, o) // weight
  o = out.writeUInt32BE(Math.floor(body.length / 0x100000000), o)
  o = out.writeUInt32BE(body.length >>> 0, o)
  o += props.copy(out, o)
  out[o++] = FRAME_END
  if (copyBody) {
    for (let start = 0; start < body.length; start += maxBody) {
      const end = Math.min(body.length, start + maxBody)
      out[o++] = FRAME_BODY
      o = out.writeUInt16BE(channel, o)
      o = out.writeUInt32BE(end - start, o)
      o += body.copy(out, o, start, end)
      out[o++] = FRAME_END
    }
    return [out]
  }
  const parts: Buffer[] = [out]
  for (let start = 0; start < body.length; start += maxBody) {
    const end = Math.min(body.length, start + maxBody)
    const frameHead = Buffer.allocUnsafe(7)
    frameHead[0] = FRAME_BODY
    frameHead.writeUInt16BE(channel, 1)
    frameHead.writeUInt32BE(end - start, 3)
    parts.push(frameHead, body.subarray(start, end), FRAME_END_BUF)
  }
  return parts
}

const FRAME_END_BUF = Buffer.from([FRAME_END])

/**
 * Thrown for a value outside what relayq itself sends (amqplib's `{'!': type}`
 * typed values, numbers beyond 2^53, bigints): the caller hands such a
 * message to amqplib's encoder instead.
 */
export class NotEncodedHere extends Error {}

/** The property flags word and property list of basic.properties, in the order AMQP 0-9-1 fixes. */
function encodeProperties (options: Options.Publish): Buffer {
  let flags = 0
  let o = 2 // the flags word goes first
  if (options.contentType !== undefined) { flags |= 0x8000; o = shortstr(options.contentType, o, 'contentType') }
  if (options.contentEncoding !== undefined) { flags |= 0x4000; o = shortstr(options.contentEncoding, o, 'contentEncoding') }
  // amqplib always sends a headers table, empty when there are none.
  flags |= 0x2000
  o = encodeTable((options.headers ?? {}) as Record<string, unknown>, o)
  const mode = deliveryMode(options)
  if (mode !== undefined) { flags |= 0x1000; ensure(o + 1); scratch[o++] = mode }
  if (options.priority !== undefined) { flags |= 0x0800; ensure(o + 1); scratch[o++] = options.priority }
  if (options.correlationId !== undefined) { flags |= 0x0400; o = shortstr(options.correlationId, o, 'correlationId') }
  if (options.replyTo !== undefined) { flags |= 0x0200; o = shortstr(options.replyTo, o, 'replyTo') }
  if (options.expiration !== undefined) { flags |= 0x0100; o = shortstr(String(options.expiration), o, 'expiration') }
  if (options.messageId !== undefined) { flags |= 0x0080; o = shortstr(options.messageId, o, 'messageId') }
  if (options.timestamp !== undefined) {
    flags |= 0x0040
    ensure(o + 8)
    o = scratch.writeUInt32BE(Math.floor(options.timestamp / 0x100000000), o)
    o = scratch.writeUInt32BE(options.timestamp >>> 0, o)
  }
  if (options.type !== undefined) { flags |= 0x0020; o = shortstr(options.type, o, 'type') }
  if (options.userId !== undefined) { flags |= 0x0010; o = shortstr(options.userId, o, 'userId') }
  if (options.appId !== undefined) { flags |= 0x0008; o = shortstr(options.appId, o, 'appId') }
  scratch.writeUInt16BE(flags, 0)
  return scratch.subarray(0, o)
}

/** amqplib's reading of `persistent` and the older boolean-or-number `deliveryMode`. */
function deliveryMode (options: Options.Publish): number | undefined {
  if (options.persistent !== undefined) return options.persistent ? 2 : 1
  const mode = options.deliveryMode as unknown
  if (typeof mode === 'number') return mode
  return mode ? 2 : undefined
}

function shortstr (value: string, start: number, what: string): number {
  const len = writeString(value, start + 1)
  if (len > 255) throw new TypeError(`Field '${what}' is the wrong type; must be a string (up to 255 chars)`)
  scratch[start] = len
  return start + 1 + len
}

/**
 * Writes `value` as UTF-8 at `at` and returns its length in bytes. Writing
 * first and measuring after saves a Buffer.byteLength per string; only a
 * string that might not fit is measured first, so a table that is too large
 * fails exactly where amqplib's would.
 */
function writeString (value: string, at: number): number {
  if (at + value.length * 3 > scratch.length) ensure(at + Buffer.byteLength(value))
  return scratch.write(value, at, 'utf8')
}

function ensure (size: number): void {
  if (size > scratch.length) {
    throw new RangeError(`Encoded field table (headers or arguments) exceeds the ${scratch.length} byte encoding buffer`)
  }
}

function encodeTable (table: Record<string, unknown>, start: number): number {
  let o = start + 4
  ensure(o)
  for (const key in table) {
    const value = table[key]
    if (value === undefined) continue
    ensure(o + 1)
    const len = writeString(key, o + 1)
    if (len > 255) throw new RangeError('a header name is longer than 255 bytes')
    scratch[o] = len
    o = encodeValue(value, o + 1 + len)
  }
  scratch.writeUInt32BE(o - start - 4, start)
  return o
}

/** The same type choices as amqplib: strings are long strings, integers take the smallest signed type. */
function encodeValue (value: unknown, start: number): number {
  let o = start
  switch (typeof value) {
    case 'string': {
      ensure(o + 5)
      scratch[o] = 0x53 // S
      const len = writeString(value, o + 5)
      scratch.writeUInt32BE(len, o + 1)
      return o + 5 + len
    }
    case 'number':
      return encodeNumber(value, o)
    case 'boolean':
      ensure(o + 2)
      scratch[o++] = 0x74 // t
      scratch[o++] = value ? 1 : 0
      return o
    case 'object': {
      if (value === null) {
        ensure(o + 1)
        scratch[o++] = 0x56 // V
        return o
      }
      if (Array.isArray(value)) {
        ensure(o + 5)
        scratch[o++] = 0x41 // A
        const sizeAt = o
        o += 4
        for (const v of value) o = encodeValue(v, o)
        scratch.writeUInt32BE(o - sizeAt - 4, sizeAt)
        return o
      }
      if (Object.hasOwn(value, '!')) throw new NotEncodedHere('typed field value')
      if (Buffer.isBuffer(value)) {
        ensure(o + 5 + value.length)
        scratch[o++] = 0x78 // x
        o = scratch.writeUInt32BE(value.length, o)
        return o + value.copy(scratch, o)
      }
      ensure(o + 1)
      scratch[o++] = 0x46 // F
      return encodeTable(value as Record<string, unknown>, o)
    }
    default:
      throw new NotEncodedHere(`a ${typeof value} in a header table`)
  }
}

function encodeNumber (n: number, start: number): number {
  let o = start
  if (!Number.isFinite(n) || Math.abs(n) > Number.MAX_SAFE_INTEGER) throw new NotEncodedHere('a number beyond 2^53')
  // amqplib's rule: anything with a fraction (or beyond 2^63) is a double.
  if (n >= 0x8000000000000000 || (Math.abs(n) < 0x4000000000000 && Math.floor(n) !== n)) {
    ensure(o + 9)
    scratch[o++] = 0x64 // d
    return scratch.writeDoubleBE(n, o)
  }
  if (n >= -128 && n < 128) {
    ensure(o + 2)
    scratch[o++] = 0x62 // b
    return scratch.writeInt8(n, o)
  }
  if (n >= -0x8000 && n < 0x8000) {
    ensure(o + 3)
    scratch[o++] = 0x73 // s
    return scratch.writeInt16BE(n, o)
  }
  if (n >= -0x80000000 && n < 0x80000000) {
    ensure(o + 5)
    scratch[o++] = 0x49 // I
    return scratch.writeInt32BE(n, o)
  }
  ensure(o + 9)
  scratch[o++] = 0x6c // l
  // Integers here are below 2^53: two halves avoid a BigInt per value.
  const high = Math.floor(n / 0x100000000)
  o = scratch.writeInt32BE(high, o)
  return scratch.writeUInt32BE(n - high * 0x100000000, o)
}
