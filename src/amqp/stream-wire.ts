// The wire messages of a streamed response (docs/streaming.md). A request
// announces that its requester takes streams with `x-relayq-accept-stream`;
// the dequeuer may then answer with several messages on the same reply-to,
// all under the request's correlation id:
//   head  (seq 0): status and headers, like a buffered reply, empty body
//   chunk (seq 1..n): body bytes, in order
//   end   (seq n+1): trailers as headers, and `x-relayq-error` if the call failed mid-way
// Each carries `x-relayq-stream-id` (one per attempt, so a redelivered
// request's second stream is never mixed into the first) and `replyTo`, the
// dequeuer's own direct reply-to address, to which the enqueuer sends
// credits (`x-relayq-stream-ack`: every message up to this seq was written
// to the client) and cancels. Every header is a string. Pure: no I/O.
import type { Message, Options } from 'amqplib'
import { DIRECT_REPLY_TO, type Publishable } from './wire'
import { integerValue, safeString } from './header-values'

export const SH = {
  accept: 'x-relayq-accept-stream',
  kind: 'x-relayq-stream',
  id: 'x-relayq-stream-id',
  seq: 'x-relayq-stream-seq',
  ack: 'x-relayq-stream-ack',
  cancel: 'x-relayq-stream-cancel',
  error: 'x-relayq-error',
} as const

export type StreamKind = 'head' | 'chunk' | 'end'

/** The largest window a dequeuer honours; bounds what one stream can hold in flight. */
export const MAX_WINDOW = 64
/** The announced credit wait a dequeuer honours, clamped. */
export const MIN_CREDIT_WAIT_MS = 1000
export const MAX_CREDIT_WAIT_MS = 3600_000

/** The request's announcement: the window of unacknowledged messages and how long the requester may go without a credit. */
export interface StreamAccept {
  readonly window: number
  readonly creditWaitMs: number
}

/** `window;creditWaitMs`, both decimal: a string, as every header relayq writes. */
export function encodeAccept (a: StreamAccept): string {
  return `${a.window};${a.creditWaitMs}`
}

/** The announcement on a request, or null (none, or not one relayq wrote: the reply is then buffered). */
export function readAccept (headers: Record<string, unknown> | undefined): StreamAccept | null {
  const value = headers?.[SH.accept]
  if (value === undefined) return null
  const text = safeString(value) ?? ''
  // Every request from one enqueuer carries the same value: the last one read is kept (a memo; still pure).
  if (text === last.text) return last.accept
  const m = /^([0-9]{1,4});([0-9]{1,9})$/.exec(text)
  const window = m === null ? 0 : Math.min(MAX_WINDOW, Number(m[1]))
  const accept = m === null || window < 2 ? null : { window, creditWaitMs: Math.min(MAX_CREDIT_WAIT_MS, Math.max(MIN_CREDIT_WAIT_MS, Number(m[2]))) }
  last = { text, accept }
  return accept
}

let last: { readonly text: string, readonly accept: StreamAccept | null } = { text: '', accept: null }

/** One message of a stream, from the dequeuer; `headers` holds the head's status and headers or the end's trailers. */
export function encodeStreamMessage (kind: StreamKind, streamId: string, seq: number, correlationId: string, headers: Record<string, unknown>, content: Buffer): Publishable {
  headers[SH.kind] = kind
  headers[SH.id] = streamId
  headers[SH.seq] = String(seq)
  const options: Options.Publish = { correlationId, replyTo: DIRECT_REPLY_TO, headers }
  return { content, options }
}

/** The cheap test on every reply: is it part of a stream? */
export function streamKind (msg: Message): StreamKind | null {
  const v = (msg.properties.headers as Record<string, unknown> | undefined)?.[SH.kind]
  return v === 'head' || v === 'chunk' || v === 'end' ? v : null
}

export interface StreamPosition {
  readonly kind: StreamKind
  readonly id: string
  readonly seq: number
  /** The dequeuer's address for credits and cancels. */
  readonly replyTo: string
}

/** The position of a stream message, validated; null when it is not a well-formed one. */
export function streamPosition (msg: Message): StreamPosition | null {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
  const kind = streamKind(msg)
  const id = safeString(headers[SH.id])
  const seq = integerValue(headers[SH.seq])
  const replyTo = msg.properties.replyTo as unknown
  if (kind === null || id === undefined || !/^[0-9a-f-]{8,64}$/.test(id) || seq === null || seq < 0) return null
  if (typeof replyTo !== 'string' || !replyTo.startsWith(`${DIRECT_REPLY_TO}.`)) return null
  return { kind, id, seq, replyTo }
}

/** A credit (`ack` = the last seq written to the client) or a cancel, from the enqueuer to the dequeuer. */
export function encodeControl (correlationId: string, streamId: string, control: { readonly ack: number } | { readonly cancel: string }): Publishable {
  const headers: Record<string, unknown> = { [SH.id]: streamId }
  if ('ack' in control) headers[SH.ack] = String(control.ack)
  else headers[SH.cancel] = control.cancel
  return { content: Buffer.alloc(0), options: { correlationId, headers } }
}

export type StreamControl = { readonly id: string, readonly ack: number } | { readonly id: string, readonly cancel: string }

/** A credit or cancel as the dequeuer reads it; null when it is neither (ignored). */
export function readControl (msg: Message): StreamControl | null {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
  const id = safeString(headers[SH.id])
  if (id === undefined) return null
  const cancel = safeString(headers[SH.cancel])
  if (cancel !== undefined) return { id, cancel: cancel.slice(0, 40) }
  const ack = integerValue(headers[SH.ack])
  return ack === null || ack < 0 ? null : { id, ack }
}
