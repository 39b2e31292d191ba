// The replies the dequeuer publishes: the service's answer, or relayq's own
// error answer. A service answer that cannot be carried in a broker message
// (a header name over AMQP's 255-byte limit, a header table over the
// encoder's 64 KiB) is found here, before publishing, so it is answered once
// with its own code instead of failing the publish and being retried.
import type { ConsumeMessage } from 'amqplib'
import { DIRECT_REPLY_TO, encodeResponse, type IncomingRequest, type Publishable } from '../amqp/wire'
import { errorBody, statusOf, type ErrorCode } from '../errors'
import { responseHeaderTable } from '../http/headers'
import type { ForwardResult } from './call-result'

export interface Reply {
  readonly message: Publishable
  /** Why the message cannot be encoded; null when it can. */
  readonly unencodable: string | null
}

/** AMQP short strings (header names) hold at most 255 bytes. */
const MAX_NAME_BYTES = 255
/** The encoder writes the whole header table into a 64 KiB buffer; room is left for the other properties. */
const MAX_TABLE_BYTES = 60 * 1024

export function serviceReply (msg: ConsumeMessage, r: Extract<ForwardResult, { kind: 'response' }>, req: IncomingRequest | null): Reply {
  // RFC 9110: 204 and 304 carry no body, and 204 no Content-Length either.
  const bodiless = r.status === 204 || r.status === 304
  const { table, contentType } = responseHeaderTable(r.rawHeaders, req?.method === 'HEAD' && !bodiless)
  const message = encodeResponse({
    status: r.status,
    headers: table,
    body: bodiless ? Buffer.alloc(0) : r.body,
    correlationId: msg.properties.correlationId as string | undefined,
    contentType,
    persistent: isDurableReplyTo(msg.properties.replyTo as string | undefined),
    jobId: req?.jobId,
  })
  return { message, unencodable: unencodable(message.options.headers as Record<string, unknown>) }
}

export function errorReply (msg: ConsumeMessage, code: ErrorCode, detail: string, req: IncomingRequest | null): Reply {
  const message = encodeResponse({
    status: statusOf(code),
    headers: { 'content-type': 'application/json' },
    body: errorBody(code, detail),
    correlationId: msg.properties.correlationId as string | undefined,
    contentType: 'application/json',
    errorCode: code,
    persistent: isDurableReplyTo(msg.properties.replyTo as string | undefined),
    jobId: req?.jobId,
  })
  return { message, unencodable: null }
}

export function isDurableReplyTo (replyTo: string | undefined): boolean {
  return replyTo !== undefined && !replyTo.startsWith(DIRECT_REPLY_TO)
}

/** The encoder's limits, checked on the table as it will be written (strings as long strings, as amqplib does). */
export function unencodable (table: Record<string, unknown>): string | null {
  let size = 4
  for (const name in table) {
    const value = table[name]
    if (value === undefined) continue
    const nameBytes = Buffer.byteLength(name)
    if (nameBytes > MAX_NAME_BYTES) return `the service answered a header name of ${nameBytes} bytes; a broker message carries at most ${MAX_NAME_BYTES}`
    size += 1 + nameBytes + valueBytes(value)
    if (size > MAX_TABLE_BYTES) return `the service answered more than ${MAX_TABLE_BYTES} bytes of headers, more than a broker message carries`
  }
  return null
}

function valueBytes (value: unknown): number {
  if (typeof value === 'string') return 5 + Buffer.byteLength(value)
  if (Buffer.isBuffer(value)) return 5 + value.length
  if (Array.isArray(value)) return 5 + value.reduce<number>((n, v) => n + valueBytes(v), 0)
  return 9
}
