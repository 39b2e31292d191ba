// A real HTTP service for the tests: it records what it receives and answers
// as the test tells it (by default it echoes the request back as JSON).
import { createHash } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  readonly method: string
  readonly url: string
  readonly headers: Record<string, string | string[] | undefined>
  readonly rawHeaders: string[]
  readonly body: Buffer
  readonly sha256: string
  readonly at: number
}

export type Behaviour = (req: Received, res: ServerResponse) => void | Promise<void>

export interface Echo {
  readonly url: string
  readonly port: number
  readonly received: Received[]
  behave: (b: Behaviour) => void
  close: () => Promise<void>
}

export const echoJson: Behaviour = (req, res) => {
  const body = Buffer.from(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, sha256: req.sha256, length: req.body.length }))
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
  res.end(body)
}

/** Answers with the request body itself (binary-safe). */
export const echoBody: Behaviour = (req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': req.body.length, 'x-echo-sha256': req.sha256 })
  res.end(req.body)
}

export async function startEcho (behaviour: Behaviour = echoJson): Promise<Echo> {
  let current = behaviour
  const received: Received[] = []
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const r: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
        sha256: createHash('sha256').update(body).digest('hex'),
        at: Date.now(),
      }
      received.push(r)
      Promise.resolve(current(r, res)).catch(() => res.destroy())
    })
  })
  server.keepAliveTimeout = 10000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    behave: (b) => { current = b },
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
