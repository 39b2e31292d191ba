// nginx's lingering close, for answers given before the request body was
// read (a 413, a refusal, a timeout). Closing a socket that still has unread
// bytes makes the kernel reset the connection, and clients that send the whole
// body before reading (Python's http.client and urllib, Node's fetch) then see
// EPIPE or ECONNRESET, never the answer already sent. So when Node closes such
// a connection, relayq shuts its write side (FIN after the answer) and reads
// and drops what the client still sends, up to a bound in bytes and time,
// before closing.
//
// Node closes a connection after its last answer with `socket.destroySoon()`
// (lib/_http_server.js, resOnFinish); relayq replaces that method on the
// sockets of requests with a body. test/security/uploads.test.ts fails if a
// Node upgrade stops calling it.
import type { IncomingMessage } from 'node:http'
import net from 'node:net'

/** Bytes read and dropped at most; nginx bounds lingering by time only, relayq by both. */
export const LINGER_MAX_BYTES = 64 * 1024 * 1024
/** The whole linger at most (nginx's lingering_time). */
export const LINGER_MAX_MS = 30000
/** Silence that ends it (nginx's lingering_timeout). */
export const LINGER_IDLE_MS = 5000

// How often the bounds are checked: at loopback speed the byte bound may be passed by what arrives meanwhile.
const LINGER_CHECK_MS = 50

const kRequest = Symbol('relayq.lingerRequest')
type LingerSocket = net.Socket & { [kRequest]?: IncomingMessage | undefined, destroySoon?: () => void }
const nodeDestroySoon = (net.Socket.prototype as unknown as { destroySoon: (this: net.Socket) => void }).destroySoon

/** Lingers on close if `req` (a request with a body) is answered and closed before its body was all read. */
export function lingerIfUnread (req: IncomingMessage): void {
  const socket = req.socket as LingerSocket
  if (!(kRequest in socket)) socket.destroySoon = lingeringDestroySoon
  socket[kRequest] = req
}

function lingeringDestroySoon (this: LingerSocket): void {
  const req = this[kRequest]
  this[kRequest] = undefined
  if (req === undefined || req.complete || this.destroyed) {
    nodeDestroySoon.call(this)
    return
  }
  linger(this, req)
}

/**
 * Node's parser goes on reading the body and drops it (the request is
 * dumped); relayq watches the socket's byte count. Once the body is complete
 * nothing is left unread, and the socket closes without a reset.
 */
function linger (socket: net.Socket, req: IncomingMessage): void {
  const started = Date.now()
  const firstByte = socket.bytesRead
  let seen = firstByte
  let quietSince = started
  const stop = (): void => {
    clearInterval(timer)
    socket.destroy()
  }
  const timer = setInterval(() => {
    const now = Date.now()
    if (socket.bytesRead !== seen) {
      seen = socket.bytesRead
      quietSince = now
    }
    if (seen - firstByte > LINGER_MAX_BYTES || now - started > LINGER_MAX_MS || now - quietSince > LINGER_IDLE_MS) stop()
  }, LINGER_CHECK_MS).unref()
  req.once('end', stop)
  socket.once('end', stop)
  socket.once('close', stop)
  socket.end()
  req.resume()
}
