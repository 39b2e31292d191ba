// Reads a request body up to a limit. A declared Content-Length over the
// limit is refused before a byte is read; a chunked body is cut off as soon
// as it passes the limit. A client that asked `Expect: 100-continue` gets its
// 100 Continue only here, when the body is about to be read: every refusal
// before that (a 413 for a declared length, a 404, ...) goes out first, and
// the client never sends the body.
import type { IncomingMessage, ServerResponse } from 'node:http'

export const EMPTY = Buffer.alloc(0)

export type BodyResult = Buffer | 'too_large' | 'aborted'

export function declaredTooLarge (contentLength: string | undefined, limit: number): boolean {
  return contentLength !== undefined && Number(contentLength) > limit
}

const kContinue = Symbol('relayq.continue')
type ContinuingRequest = IncomingMessage & { [kContinue]?: { res: ServerResponse, keepAlive: boolean } | undefined }

/**
 * For Node's `checkContinue`: holds the 100 Continue back until readBody. Until
 * then the connection is marked to close, since an answer without it leaves a
 * body the client may or may not send, and the next bytes could be either.
 */
export function deferContinue (req: IncomingMessage, res: ServerResponse): void {
  (req as ContinuingRequest)[kContinue] = { res, keepAlive: res.shouldKeepAlive }
  res.shouldKeepAlive = false
}

function sendContinue (req: ContinuingRequest): void {
  const deferred = req[kContinue]
  if (deferred === undefined) return
  req[kContinue] = undefined
  if (deferred.res.headersSent) return
  deferred.res.shouldKeepAlive = deferred.keepAlive
  deferred.res.writeContinue()
}

/** `expectBody`: the request declared a Content-Length or a Transfer-Encoding (else HTTP/1.1 says it has none). */
export function readBody (req: IncomingMessage, limit: number, expectBody: boolean, done: (result: BodyResult) => void): void {
  sendContinue(req)
  if (!expectBody) {
    req.resume()
    done(EMPTY)
    return
  }
  const chunks: Buffer[] = []
  let size = 0
  let finished = false
  const finish = (result: BodyResult): void => {
    if (finished) return
    finished = true
    req.off('data', onData)
    req.off('end', onEnd)
    req.off('aborted', onAborted)
    req.off('error', onAborted)
    done(result)
  }
  const onData = (chunk: Buffer): void => {
    size += chunk.length
    if (size > limit) {
      req.pause()
      finish('too_large')
      return
    }
    chunks.push(chunk)
  }
  const onEnd = (): void => finish(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size))
  const onAborted = (): void => finish('aborted')
  req.on('data', onData)
  req.on('end', onEnd)
  req.on('aborted', onAborted)
  req.on('error', onAborted)
}
