// The enqueuer's HTTP server: Node's strict parser, limits and timeouts that
// a slow or hostile client cannot outwait, and JSON answers even for requests
// the parser refuses before any handler runs.
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Server as NetServer, Socket } from 'node:net'
import { deferContinue } from './body'
import { lingerIfUnread } from './linger'
import { sendError, writeRawError } from './respond'

export interface HttpServerOptions {
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxHeaderBytes: number
  /** Header count limit; one more is let through so the handler can see the overflow and answer 431. */
  readonly maxHeaders: number
  readonly maxConnections: number
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void

export function createHttpServer (opts: HttpServerOptions, handler: Handler): Server {
  const server = http.createServer({
    headersTimeout: opts.headersTimeoutMs,
    requestTimeout: opts.requestTimeoutMs,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
    maxHeaderSize: opts.maxHeaderBytes,
    // Node checks the two timeouts above only this often (30 s by default), so
    // a slowloris socket would outlive headersTimeout by up to half a minute.
    connectionsCheckingInterval: Math.min(500, Math.max(50, Math.floor(opts.headersTimeoutMs / 4))),
    noDelay: true,
    joinDuplicateHeaders: false,
    insecureHTTPParser: false,
    // Node's own refusal of a missing Host is a bare 400; relayq answers it in JSON below.
    requireHostHeader: false,
  }, onRequest)
  function onRequest (req: IncomingMessage, res: ServerResponse): void {
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) lingerIfUnread(req)
    // Past the header count limit Node keeps only the first headers: the handler answers that 431.
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.rawHeaders.length <= opts.maxHeaders * 2) {
      sendError(res, 'RQ_ERR_BAD_REQUEST', 'an HTTP/1.1 request needs a Host header', { close: true })
      return
    }
    handler(req, res)
  }
  // A 100 Continue goes out only once the body is read (http/body.ts), so a refusal comes first.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    deferContinue(req, res)
    onRequest(req, res)
  })
  server.maxHeadersCount = opts.maxHeaders + 1
  server.maxConnections = opts.maxConnections
  server.on('clientError', onClientError)
  // Upgrade requests (websockets, h2c) cannot be carried over a queue.
  server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    writeRawError(socket, 'RQ_ERR_UPGRADE_NOT_SUPPORTED', 'protocol upgrades cannot be carried over a queue')
  })
  // Without a listener Node drops a CONNECT without a word; relayq is not a forward proxy.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    writeRawError(socket, 'RQ_ERR_METHOD_NOT_ALLOWED', 'CONNECT is not supported')
  })
  return server
}

const kBroken = Symbol('relayq.brokenPipeline')
type ServerSocket = Socket & { _httpMessage?: ServerResponse | null, [kBroken]?: true }

/** JSON answers for requests the parser refused; used by the admin server too. */
export function onClientError (err: NodeJS.ErrnoException, socket: ServerSocket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  // A pipelined request broke while an earlier, complete one still waits for
  // its reply: an error written now would reach the client first and read as
  // that request's answer. The earlier answer goes out, then the connection
  // closes; the broken request gets no answer, so the client knows it did not run.
  const inFlight = socket._httpMessage
  if (inFlight != null && !inFlight.writableFinished && inFlight.req.complete) {
    if (socket[kBroken] === true) return
    socket[kBroken] = true
    inFlight.shouldKeepAlive = false
    inFlight.once('finish', () => socket.end())
    return
  }
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      writeRawError(socket, 'RQ_ERR_HEADERS_TOO_LARGE', 'request line and headers exceed the size limit')
      return
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      writeRawError(socket, 'RQ_ERR_REQUEST_TIMEOUT', 'the request was not received in time')
      return
    case 'HPE_URI_TOO_LONG':
      writeRawError(socket, 'RQ_ERR_URI_TOO_LONG', 'request target too long')
      return
    default:
      writeRawError(socket, 'RQ_ERR_BAD_REQUEST', 'malformed HTTP request')
  }
}

/** The variables that chose a listener's port and address, for messages that name them. */
export interface ListenerNames {
  readonly port: string
  readonly host: string
  /** Logs "listening on" once bound. */
  readonly logger?: { info: (obj: object, msg: string) => void }
}

/** A port that cannot be had, named by its variable: start-up stops with this message, not a stack trace. */
export class ListenError extends Error {
  constructor (readonly names: ListenerNames, readonly address: string, readonly code: string) {
    super(`cannot listen on ${address} (${names.port}${code === 'EADDRNOTAVAIL' ? `, ${names.host}` : ''}): ${LISTEN_PROBLEMS[code] ?? code}`)
    this.name = 'ListenError'
  }
}

const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: 'the port is already in use; stop the other process or choose another port',
  EACCES: 'permission denied (ports below 1024 need privileges); choose a port from 1024',
  EADDRNOTAVAIL: 'the address is not one of this machine\'s',
}

/** Resolves with the bound port. */
export function listen (server: Server | NetServer, port: number, host: string, names?: ListenerNames): Promise<number> {
  return new Promise((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException): void => {
      reject(names === undefined ? err : new ListenError(names, hostPort(host, port), err.code ?? 'error'))
    }
    server.once('error', fail)
    server.listen(port, host, () => {
      server.off('error', fail)
      const address = server.address()
      const bound = typeof address === 'object' && address !== null ? address.port : port
      names?.logger?.info({ address: hostPort(host, bound), variable: names.port }, `listening on http://${hostPort(host, bound)} (${names.port})`)
      resolve(bound)
    })
  })
}

function hostPort (host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}
