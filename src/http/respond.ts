// The only module that writes relayq's own answers. Each carries the JSON
// body {error, detail, code} and an `x-relayq-error` header, so clients and
// dashboards can tell relayq's failures from the service's own answers.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { errorBody, phraseOf, RelayqError, statusOf, type ErrorCode } from '../errors'

export interface ErrorOptions {
  /** Seconds for a Retry-After header (on 503s the client may retry). */
  readonly retryAfter?: number
  /** The id the client sees; a new one when the answer has none yet (every answer carries one). */
  readonly correlationId?: string
  /** Close the connection after this answer (draining, or an unread body). */
  readonly close?: boolean
}

export function sendError (res: ServerResponse, code: ErrorCode, detail: string, options: ErrorOptions = {}): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = errorBody(code, detail)
  const headers: string[] = [
    'content-type', 'application/json',
    'content-length', String(body.length),
    'x-relayq-error', code,
  ]
  if (options.retryAfter !== undefined) headers.push('retry-after', String(options.retryAfter))
  headers.push('x-correlation-id', options.correlationId ?? randomUUID())
  if (options.close === true) {
    headers.push('connection', 'close')
    res.shouldKeepAlive = false
  }
  res.writeHead(statusOf(code), headers)
  res.end(body)
}

/** Answers a caught error: a RelayqError with its own code and detail, anything else as RQ_ERR_INTERNAL. */
export function sendFailure (res: ServerResponse, err: unknown, what: string, options: ErrorOptions = {}): void {
  if (err instanceof RelayqError) sendError(res, err.code, err.detail, options)
  else sendError(res, 'RQ_ERR_INTERNAL', `${what}: ${err instanceof Error ? err.message : String(err)}`, options)
}

export function sendJson (res: ServerResponse, status: number, value: unknown, extraHeaders: string[] = []): void {
  const body = Buffer.from(JSON.stringify(value))
  res.writeHead(status, ['content-type', 'application/json', 'content-length', String(body.length), ...extraHeaders])
  res.end(body)
}

/** An error answer written straight to a socket, for requests Node's parser refused before any handler ran. */
export function writeRawError (socket: Socket, code: ErrorCode, detail: string): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = errorBody(code, detail)
  socket.end(
    `HTTP/1.1 ${statusOf(code)} ${phraseOf(code)}\r\n` +
    'content-type: application/json\r\n' +
    `content-length: ${body.length}\r\n` +
    `x-relayq-error: ${code}\r\n` +
    `x-correlation-id: ${randomUUID()}\r\n` +
    'connection: close\r\n\r\n' + body.toString(),
  )
}
