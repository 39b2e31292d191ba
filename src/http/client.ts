// A small HTTP client for relayq's own occasional calls (health checks, batch
// size, job callbacks): node:http with one deadline for the whole exchange
// and no redirects followed. The hot path uses undici's Pool instead.
import http from 'node:http'
import https from 'node:https'
import type { LookupFunction } from 'node:net'

export interface CallOptions {
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string | Buffer
  readonly timeoutMs: number
  /** Bodies beyond this are cut off (the call fails). */
  readonly maxBytes?: number
  /** Resolves the host (callbacks use it to check the address connected to); such calls get a socket of their own. */
  readonly lookup?: LookupFunction
}

export interface CallResult {
  readonly status: number
  readonly body: Buffer
}

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 4 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 4 }),
}

export function httpCall (target: URL | string, opts: CallOptions): Promise<CallResult> {
  const url = typeof target === 'string' ? new URL(target) : target
  const transport = url.protocol === 'https:' ? https : http
  const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:']
  const maxBytes = opts.maxBytes ?? 1024 * 1024
  return new Promise((resolve, reject) => {
    const connect = opts.lookup === undefined ? { agent } : { agent: false, lookup: opts.lookup }
    const req = transport.request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {}, ...connect }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > maxBytes) req.destroy(new Error('answer too large'))
        else chunks.push(c)
      })
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) })
      })
      res.on('error', reject)
    })
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), opts.timeoutMs)
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    req.end(opts.body)
  })
}
