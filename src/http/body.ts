// Reads a request body up to a limit. A declared Content-Length over the
// limit is refused before a byte is read; a chunked body is cut off as soon
// as it passes the limit.
import type { IncomingMessage } from 'node:http'

export const EMPTY = Buffer.alloc(0)

export type BodyResult = Buffer | 'too_large' | 'aborted'

export function declaredTooLarge (contentLength: string | undefined, limit: number): boolean {
  return contentLength !== undefined && Number(contentLength) > limit
}

/** `expectBody`: the request declared a Content-Length or a Transfer-Encoding (else HTTP/1.1 says it has none). */
export function readBody (req: IncomingMessage, limit: number, expectBody: boolean, done: (result: BodyResult) => void): void {
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
