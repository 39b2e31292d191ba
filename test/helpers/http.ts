// A small HTTP client for tests (undici, no retries, no redirects followed).
import http from 'node:http'
import { request } from 'undici'
import type { Dispatcher } from 'undici'

export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer
  json: <T = Record<string, unknown>>() => T
  /** Milliseconds from sending to the whole answer. */
  readonly ms: number
}

export async function send (url: string, opts: { method?: string, headers?: Record<string, string | string[]>, body?: Buffer | string, dispatcher?: Dispatcher } = {}): Promise<Answer> {
  const started = performance.now()
  const res = await request(url, {
    method: (opts.method ?? 'GET'),
    headers: opts.headers ?? {},
    body: opts.body ?? null,
    ...(opts.dispatcher === undefined ? {} : { dispatcher: opts.dispatcher }),
  })
  const body = Buffer.from(await res.body.arrayBuffer())
  return {
    status: res.statusCode,
    headers: res.headers,
    body,
    json: <T>() => JSON.parse(body.toString()) as T,
    ms: performance.now() - started,
  }
}

/** The same through node:http, which lets a test send headers undici refuses (keep-alive, te, upgrade...). */
export function sendNode (url: string, opts: { method?: string, headers?: Record<string, string | string[]>, body?: Buffer | string } = {}): Promise<Answer> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    // Parsed by hand: WHATWG URL parsing would normalise the dot segments some tests send on purpose.
    const m = /^http:\/\/([^/:]+):(\d+)(\/.*)?$/.exec(url)
    if (m === null) throw new Error(`unsupported url ${url}`)
    const target = { host: m[1], port: Number(m[2]), path: m[3] ?? '/' }
    const req = http.request({ ...target, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body.toString()) as T, ms: performance.now() - started })
      })
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}
