// One place that says what a broker, socket or encoder error means. amqplib
// sets `err.code` to the AMQP reply code of a channel or connection close
// (404, 406, 403, 320, 530...); Node sets string codes on socket and TLS
// errors; the encoder throws RangeError. Nothing else in relayq looks at an
// error's message: texts change between versions, codes do not.
import type { EventEmitter } from 'node:events'

export type ErrorKind =
  | 'not_found' // 404: a queue or exchange that does not exist
  | 'precondition_failed' // 406: inequivalent arguments, unknown delivery tag, consumer timeout, message too large
  | 'access_refused' // 403: credentials or permissions
  | 'not_allowed' // 530: a missing virtual host, or one this user may not use
  | 'resource_locked' // 405: an exclusive queue of another connection
  | 'connection_forced' // 320: the broker is shutting down or an operator closed the connection
  | 'broker_error' // any other AMQP reply code
  | 'nacked' // the broker answered a publish with basic.nack
  | 'channel_closed' // the channel went away with the publish unconfirmed
  | 'unencodable' // the encoder cannot carry the message (header name over 255 bytes, table over 64 KiB)
  | 'tls_not_tls' // amqps:// to a port that does not speak TLS
  | 'tls_refused_by_broker' // the broker's alert: our certificate (or its absence) was refused
  | 'tls_certificate' // the broker's certificate does not verify
  | 'network' // refused, reset, timed out, unreachable
  | 'unknown'

export interface Classified {
  readonly kind: ErrorKind
  /** Whether trying again later can succeed without an operator's change. */
  readonly retryable: boolean
  /** The code it was classified by (AMQP reply code or Node error code), for logs. */
  readonly code: number | string | undefined
}

const AMQP: Record<number, ErrorKind> = { 404: 'not_found', 406: 'precondition_failed', 403: 'access_refused', 530: 'not_allowed', 405: 'resource_locked', 320: 'connection_forced' }
const PERMANENT = new Set<ErrorKind>(['not_found', 'precondition_failed', 'access_refused', 'not_allowed', 'unencodable', 'tls_not_tls', 'tls_refused_by_broker', 'tls_certificate'])

// OpenSSL's answers when the far side is not speaking TLS at all (a plain AMQP
// listener answers the client hello with "AMQP\0\0\x09\x01").
const NOT_TLS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST', 'ERR_SSL_UNKNOWN_PROTOCOL', 'ERR_SSL_RECORD_LAYER_FAILURE'])
const CERTIFICATE = /^(ERR_TLS_CERT_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_(GET|VERIFY)_)/
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED'])

export function classify (err: unknown): Classified {
  const kind = kindOf(err)
  return { kind, retryable: !PERMANENT.has(kind), code: codeOf(err) }
}

function kindOf (err: unknown): ErrorKind {
  if (err instanceof BrokerNackError) return 'nacked'
  if (err instanceof ChannelClosedError) return 'channel_closed'
  if (err instanceof RangeError) return 'unencodable'
  if (!(err instanceof Error)) return 'unknown'
  const code = (err as NodeJS.ErrnoException).code as unknown
  if (typeof code === 'number') return AMQP[code] ?? 'broker_error'
  if (typeof code === 'string') {
    if (NOT_TLS.has(code)) return 'tls_not_tls'
    if (/^ERR_SSL_.*_ALERT_/.test(code)) return 'tls_refused_by_broker'
    if (CERTIFICATE.test(code)) return 'tls_certificate'
    if (NETWORK.has(code)) return 'network'
  }
  // A wrapper (PublishError) classifies as what it wraps.
  if (err.cause !== undefined && err.cause !== err) return kindOf(err.cause)
  return 'unknown'
}

function codeOf (err: unknown): number | string | undefined {
  if (!(err instanceof Error)) return undefined
  const code = (err as NodeJS.ErrnoException).code as unknown
  if (typeof code === 'number' || typeof code === 'string') return code
  return err.cause !== undefined && err.cause !== err ? codeOf(err.cause) : undefined
}

/** The broker refused a published message (basic.nack). */
export class BrokerNackError extends Error {
  override readonly name = 'BrokerNackError'
}

/** A publish was still unconfirmed when its channel closed: it may or may not have been queued. */
export class ChannelClosedError extends Error {
  override readonly name = 'ChannelClosedError'
}

const closing = new WeakSet<object>()

/**
 * amqplib fails a confirm with a plain Error both for a nack and for a channel
 * that closed; which one it was is known from the channel's state. Call once
 * per confirm channel, before anything is published on it.
 */
export function watchConfirms (ch: EventEmitter): void {
  // Prepended: amqplib's own 'close' listener fails the callbacks, and this must run first.
  ch.prependListener('close', () => { closing.add(ch) })
}

/** The typed error for a failed confirm on a channel given to watchConfirms. */
export function confirmError (ch: object, err: unknown): Error {
  return closing.has(ch)
    ? new ChannelClosedError('the channel closed before the broker confirmed the message', { cause: err })
    : new BrokerNackError('the broker refused the message (basic.nack)', { cause: err })
}
