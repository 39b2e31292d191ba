// HTTP through a bare TCP socket, for requests no client library will send:
// ambiguous framing, obs-fold, absolute-form targets, drips, random bytes.
import net from 'node:net'

export interface RawResponse {
  readonly status: number
  /** Lower-cased names; repeated headers joined with ", ". */
  readonly headers: Record<string, string>
  readonly body: string
}

export interface RawExchange {
  /** Everything the server wrote, as latin1. */
  readonly text: string
  /** Every response found in `text`, in order (pipelining would show as more than one). */
  readonly responses: RawResponse[]
  /** The server closed (or reset) the connection before the wait ended. */
  readonly closed: boolean
  /** Milliseconds from connecting to the close (or to the end of the wait). */
  readonly ms: number
}

export interface RawOptions {
  /** Pieces of `payload` are written this far apart (a slow client). */
  readonly gapMs?: number
  /** How long to wait for the server to close before giving up (the socket is then destroyed). */
  readonly timeoutMs?: number
  /** Stop as soon as one whole response has arrived, without waiting for the close. */
  readonly firstResponse?: boolean
  readonly host?: string
  /** The request was a HEAD: responses carry no body whatever their Content-Length. */
  readonly head?: boolean
}

/** Writes `payload` (one piece, or pieces `gapMs` apart) and collects the answer until the server closes. */
export function rawExchange (port: number, payload: string | Buffer | Array<string | Buffer>, opts: RawOptions = {}): Promise<RawExchange> {
  const pieces = Array.isArray(payload) ? payload : [payload]
  const started = performance.now()
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let settled = false
    const timers: NodeJS.Timeout[] = []
    const socket = net.connect(port, opts.host ?? '127.0.0.1')
    const finish = (closed: boolean): void => {
      if (settled) return
      settled = true
      for (const t of timers) clearTimeout(t)
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      resolve({ text, responses: parseResponses(text, opts.head), closed, ms: performance.now() - started })
    }
    socket.on('connect', () => {
      pieces.forEach((piece, i) => {
        const write = (): void => { if (!socket.destroyed) socket.write(piece) }
        if (i === 0 || opts.gapMs === undefined) write()
        else timers.push(setTimeout(write, i * opts.gapMs))
      })
    })
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      if (opts.firstResponse === true && parseResponses(Buffer.concat(chunks).toString('latin1'), opts.head).some((r) => r.status >= 200)) finish(false)
    })
    socket.on('error', () => finish(true))
    socket.on('close', () => finish(true))
    timers.push(setTimeout(() => finish(false), opts.timeoutMs ?? 5000))
  })
}

/**
 * Splits a byte stream into HTTP/1.1 responses: Content-Length framed, a
 * response without one takes the rest; 1xx, 204, 304 and answers to HEAD have no body.
 */
export function parseResponses (text: string, head = false): RawResponse[] {
  const out: RawResponse[] = []
  let rest = text
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const lines = rest.slice(0, end).split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '')
    if (m === null) break
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon <= 0) continue
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
    const bodyStart = end + 4
    const status = Number(m[1])
    const bodyless = status < 200 || status === 204 || status === 304 || (head && status >= 200)
    const length = bodyless ? 0 : headers['content-length'] === undefined ? rest.length - bodyStart : Number(headers['content-length'])
    if (rest.length < bodyStart + length) break
    out.push({ status, headers, body: rest.slice(bodyStart, bodyStart + length) })
    rest = rest.slice(bodyStart + length)
  }
  return out
}

/** True when `text` starts with a well-formed HTTP/1.x status line. */
export function hasValidStatusLine (text: string): boolean {
  return /^HTTP\/1\.[01] [1-5]\d\d [^\r\n]*\r\n/.test(text)
}
