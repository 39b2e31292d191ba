// The little of gRPC the KEDA scaler needs, on node:http2: unary and
// server-streaming calls, h2c (KEDA dials the scaler in plaintext unless told
// otherwise), no compression. @grpc/grpc-js would do this too, but adds
// 287 KiB to the bundle even with protobufjs stubbed out (424 KiB with it);
// this is the wire protocol of doc/PROTOCOL-HTTP2.md in grpc/grpc, and
// test/process/scale-to-zero.test.ts talks to it with grpc-js and the .proto.
//
// A message is a 5-byte prefix (compressed flag, big-endian length) and the
// bytes; the status goes in trailers (grpc-status, grpc-message), or alone in
// the headers when there is nothing else to send ("trailers-only").
import http2 from 'node:http2'

export const Status = { OK: 0, INVALID_ARGUMENT: 3, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14 } as const

export class GrpcError extends Error {
  constructor (readonly code: number, message: string) {
    super(message)
  }
}

export type Unary = (request: Buffer) => Promise<Buffer>
/** Starts a stream of answers; returns what stops it (called once the peer has gone). */
export type ServerStreaming = (request: Buffer, write: (message: Buffer) => void, fail: (err: Error) => void) => () => void

export type Route = { readonly unary: Unary } | { readonly streaming: ServerStreaming }

/** Larger than any ScaledObjectRef; a request past it is refused rather than buffered. */
const MAX_REQUEST_BYTES = 64 * 1024
/** Connections at once (each with at most 100 streams, each stream one 1 s timer). */
const MAX_SESSIONS = 64

export interface GrpcServer {
  /** Listened on by the caller (http/server.ts's listen, which names the variable when the port cannot be had). */
  readonly server: http2.Http2Server
  close: () => void
}

export function createGrpcServer (routes: ReadonlyMap<string, Route>, onError: (err: Error) => void): GrpcServer {
  const sessions = new Set<http2.ServerHttp2Session>()
  const server = http2.createServer({ settings: { maxConcurrentStreams: 100 } })
  server.on('session', (s) => {
    // KEDA holds one connection per scaled object; a peer opening hundreds is not KEDA.
    if (sessions.size >= MAX_SESSIONS) {
      s.destroy()
      return
    }
    sessions.add(s)
    s.on('close', () => sessions.delete(s))
    s.on('error', () => {})
  })
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {})
    const route = routes.get(String(headers[':path']))
    if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true })
      return
    }
    if (route === undefined) return trailersOnly(stream, Status.UNIMPLEMENTED, `unknown method ${String(headers[':path'])}`)
    readRequest(stream, (request) => {
      if (request instanceof GrpcError) return trailersOnly(stream, request.code, request.message)
      if ('unary' in route) {
        route.unary(request).then((answer) => {
          if (stream.destroyed) return
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
          stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
          stream.end(frame(answer))
        }, (err: Error) => fail(stream, err, onError))
        return
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      let ended = false
      const stop = route.streaming(request, (m) => { if (!stream.destroyed) stream.write(frame(m)) }, (err) => {
        ended = true
        const { code, message } = statusOf(err, onError)
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }))
        stream.end()
      })
      stream.once('close', stop)
      if (ended) stop()
    })
  })
  return {
    server,
    close: () => {
      server.close()
      // KEDA's stream never ends by itself: waiting for it would hold the shutdown.
      for (const s of sessions) s.destroy()
    },
  }
}

function readRequest (stream: http2.ServerHttp2Stream, done: (request: Buffer | GrpcError) => void): void {
  const chunks: Buffer[] = []
  let size = 0
  let over = false
  stream.on('data', (c: Buffer) => {
    size += c.length
    if (size > MAX_REQUEST_BYTES) over = true
    else chunks.push(c)
  })
  stream.once('end', () => {
    if (over) return done(new GrpcError(Status.RESOURCE_EXHAUSTED, `request larger than ${MAX_REQUEST_BYTES} bytes`))
    done(unframe(Buffer.concat(chunks)))
  })
}

/** Exactly one uncompressed message, as a unary or server-streaming call sends. */
function unframe (body: Buffer): Buffer | GrpcError {
  if (body.length < 5) return new GrpcError(Status.INTERNAL, 'no request message')
  if (body[0] !== 0) return new GrpcError(Status.UNIMPLEMENTED, 'compressed messages are not supported')
  const length = body.readUInt32BE(1)
  if (length !== body.length - 5) return new GrpcError(Status.INTERNAL, 'expected exactly one request message')
  return body.subarray(5)
}

function frame (message: Buffer): Buffer {
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(message.length, 1)
  return Buffer.concat([prefix, message])
}

function statusOf (err: Error, onError: (err: Error) => void): { code: number, message: string } {
  if (err instanceof GrpcError) return { code: err.code, message: err.message }
  onError(err)
  return { code: Status.INTERNAL, message: 'internal error' }
}

function fail (stream: http2.ServerHttp2Stream, err: Error, onError: (err: Error) => void): void {
  const { code, message } = statusOf(err, onError)
  trailersOnly(stream, code, message)
}

function trailersOnly (stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.headersSent) return
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }, { endStream: true })
}
