// The HTTP call to the service: one undici Pool with keep-alive, driven
// through its dispatch API (no streams or promises per request; the body is
// gathered from the raw chunks). Redirects are not followed: a 3xx goes back
// to the client as it is. Every call gets the time its caller has left.
import type { Dispatcher } from 'undici'
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the module is CommonJS with `module.exports = Pool`
import Pool = require('undici/lib/dispatcher/pool')
import type { StreamOffer } from './stream'
import type { StreamSink } from './stream-sink'
import type { ForwardRequest, ForwardResult } from './call-result'

export interface ForwarderOptions {
  readonly origin: string
  readonly connections: number
  readonly maxResponseBytes: number
  readonly connectTimeoutMs: number
}

export class Forwarder {
  private readonly pool: InstanceType<typeof Pool>

  constructor (private readonly opts: ForwarderOptions) {
    this.pool = new Pool(opts.origin, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: 4000,
      connect: { timeout: opts.connectTimeoutMs },
    })
  }

  /** `stream`: set when the requester takes a streamed response (stream.ts). */
  forward (req: ForwardRequest, stream: StreamOffer | null = null): Promise<ForwardResult> {
    return new Promise((resolve) => {
      const left = req.deadline - Date.now()
      if (left <= 0) {
        resolve({ kind: 'error', code: 'RQ_ERR_DOWNSTREAM_TIMEOUT', message: 'no time left before the deadline' })
        return
      }
      const call = new DownstreamCall(this.opts.maxResponseBytes, req.deadline, resolve, stream)
      try {
        this.pool.dispatch({
          path: req.path,
          method: req.method,
          headers: req.headers,
          body: req.method === 'GET' || req.method === 'HEAD' ? (req.body.length > 0 ? req.body : null) : req.body,
          headersTimeout: left,
          bodyTimeout: left,
        }, call)
      } catch (err) {
        call.onError(err as Error)
      }
    })
  }

  async close (): Promise<void> {
    await this.pool.close()
  }
}

class TooLarge extends Error {
  override readonly name = 'TooLarge'
}

class DeadlinePassed extends Error {
  override readonly name = 'DeadlinePassed'
}

/** undici's (legacy, allocation-light) handler interface for one call. */
// A body of unknown length (StreamDecision 'later') is buffered until it has
// taken this long or grown this large; then its stream opens with what came so
// far. A small chunked answer completes long before either and goes as one
// buffered reply; a slow feed without text/event-stream pays this once.
const STREAM_LATER_MS = 50
const STREAM_LATER_BYTES = 64 * 1024

interface LaterStream {
  readonly status: number
  readonly rawHeaders: Buffer[]
  readonly resume: () => void
  readonly abort: (err: Error) => void
  readonly timer: NodeJS.Timeout
}

class DownstreamCall implements Dispatcher.DispatchHandler {
  private status = 0
  private rawHeaders: Buffer[] = []
  private readonly chunks: Buffer[] = []
  private size = 0
  private abort: ((err?: Error) => void) | null = null
  private settled = false
  private sink: StreamSink | null = null
  private later: LaterStream | null = null

  constructor (
    private readonly maxBytes: number,
    private readonly deadline: number,
    private readonly resolve: (r: ForwardResult) => void,
    private readonly stream: StreamOffer | null = null,
  ) {}

  onConnect (abort: (err?: Error) => void): void {
    this.abort = abort
  }

  onHeaders (status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (status < 200) return true
    this.status = status
    this.rawHeaders = rawHeaders
    if (this.stream !== null && this.abort !== null) {
      const connAbort = this.abort
      const abort = (err: Error): void => connAbort(err)
      const decision = this.stream.decide(status, rawHeaders)
      if (decision === 'now') {
        this.sink = this.stream.open(status, rawHeaders, resume, abort)
        if (this.sink !== null) return true
      } else if (decision === 'later') {
        this.later = { status, rawHeaders, resume, abort, timer: setTimeout(() => { this.streamNow() }, STREAM_LATER_MS) }
      }
    }
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i] as Buffer
      if (name.length === 14 && name.toString('latin1').toLowerCase() === 'content-length' &&
        Number((rawHeaders[i + 1] as Buffer).toString('latin1')) > this.maxBytes) {
        this.abort?.(new TooLarge())
        return true
      }
    }
    return true
  }

  onData (chunk: Buffer): boolean {
    // A stream is paced by its requester's credits and has no overall deadline: only idle and credit waits end it.
    if (this.sink !== null) return this.sink.data(chunk)
    if (this.later !== null && this.size + chunk.length > STREAM_LATER_BYTES) {
      this.chunks.push(chunk)
      this.size += chunk.length
      return this.streamNow()
    }
    this.size += chunk.length
    if (this.size > this.maxBytes) {
      this.abort?.(new TooLarge())
      return false
    }
    // undici's bodyTimeout is an idle timeout; this bounds the whole body by the deadline.
    if (Date.now() > this.deadline) {
      this.abort?.(new DeadlinePassed())
      return false
    }
    this.chunks.push(chunk)
    return true
  }

  /** A body of unknown length outlasted the wait: its stream opens with the chunks buffered so far. */
  private streamNow (): boolean {
    const later = this.later
    this.dropLater()
    if (later === null || this.settled || this.stream === null) return true
    const sink = this.stream.open(later.status, later.rawHeaders, later.resume, later.abort)
    // The head could not be sent: the body stays buffered, under DEQUEUER_MAX_REPLY_BYTES as usual.
    if (sink === null) return this.size <= this.maxBytes
    this.sink = sink
    let more = true
    for (const c of this.chunks) more = sink.data(c)
    this.chunks.length = 0
    this.size = 0
    return more
  }

  private dropLater (): void {
    if (this.later === null) return
    clearTimeout(this.later.timer)
    this.later = null
  }

  onComplete (trailers: Buffer[] | string[] | null): void {
    if (this.settled) return
    this.settled = true
    this.dropLater()
    if (this.sink !== null) {
      void this.sink.end(trailers, null).then(this.resolve)
      return
    }
    const body = this.chunks.length === 1 ? this.chunks[0] as Buffer : Buffer.concat(this.chunks, this.size)
    this.resolve({ kind: 'response', status: this.status, rawHeaders: this.rawHeaders, body })
  }

  onError (err: Error): void {
    if (this.settled) return
    this.settled = true
    this.dropLater()
    const result = classify(err)
    if (this.sink !== null) void this.sink.end(null, result.kind === 'error' ? result.code : null).then(this.resolve)
    else this.resolve(result)
  }
}

function classify (err: Error): ForwardResult {
  if (err instanceof TooLarge) return { kind: 'error', code: 'RQ_ERR_RESPONSE_TOO_LARGE', message: 'the service response exceeds DEQUEUER_MAX_REPLY_BYTES' }
  const code = (err as NodeJS.ErrnoException).code
  if (err instanceof DeadlinePassed || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_TIMEOUT', message: 'the service did not answer in time' }
  }
  return { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: `cannot reach the service: ${code ?? err.message}` }
}
