// Guard test for relayq's reach into undici (src/dequeuer/forward.ts): it
// imports the Pool from a deep path, to keep the rest of undici out of the
// bundle, and drives it through the legacy dispatch-handler callbacks
// (onConnect, onHeaders with raw Buffer headers, onData, onComplete, onError)
// and classifies its failures by error code. Each assumption is checked here
// against a real server, so an undici upgrade that moves the file, changes the
// callbacks or renames a code fails this test instead of the dequeuer.
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { after, before, describe, it } from 'node:test'
import type { Dispatcher } from 'undici'
import { Forwarder } from '../../src/dequeuer/forward'

const PINNED = '7.30.2'
const require = createRequire(__filename)

interface Seen {
  connect: number
  status: number
  rawHeaders: unknown[]
  chunks: Buffer[]
  completed: boolean
  error: (Error & { code?: string }) | null
}

describe('undici internals relayq relies on', () => {
  let server: Server
  let origin = ''

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/slow') return // never answers: the headers timeout fires
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        res.write(Buffer.alloc(64 * 1024, 1))
        setTimeout(() => res.end(Buffer.alloc(64 * 1024, 2)), 20)
        return
      }
      res.writeHead(201, { 'x-a': 'one', 'content-type': 'text/plain' })
      res.end('hello')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  it('is the pinned version (re-check this file when upgrading)', () => {
    const pkg = require('undici/package.json') as { version: string }
    assert.equal(pkg.version, PINNED, `undici ${pkg.version} is installed; forward.ts was verified against ${PINNED}`)
  })

  it('exports from the deep path the same Pool class as the package root', () => {
    const deep = require('undici/lib/dispatcher/pool') as unknown
    const root = (require('undici') as { Pool: unknown }).Pool
    assert.equal(typeof deep, 'function')
    assert.equal(deep, root)
  })

  function dispatch (path: string, opts: Partial<Dispatcher.DispatchOptions> = {}, abortAfterBytes = 0): Promise<Seen> {
    const Pool = require('undici/lib/dispatcher/pool') as typeof import('undici').Pool
    const pool = new Pool(origin, { connections: 1, pipelining: 1 })
    const seen: Seen = { connect: 0, status: 0, rawHeaders: [], chunks: [], completed: false, error: null }
    return new Promise<Seen>((resolve) => {
      let abort: ((err?: Error) => void) | null = null
      let bytes = 0
      const done = (): void => { void pool.close().then(() => resolve(seen)) }
      const handler = {
        onConnect (a: (err?: Error) => void) { seen.connect++; abort = a },
        onHeaders (status: number, rawHeaders: Buffer[]) { seen.status = status; seen.rawHeaders = rawHeaders; return true },
        onData (chunk: Buffer) {
          seen.chunks.push(chunk)
          bytes += chunk.length
          if (abortAfterBytes > 0 && bytes >= abortAfterBytes) {
            abort?.(Object.assign(new Error('enough'), { code: 'TEST_ABORT' }))
            return false
          }
          return true
        },
        onComplete () { seen.completed = true; done() },
        onError (err: Error) { seen.error = err; done() },
      }
      pool.dispatch({ path, method: 'GET', ...opts }, handler)
    })
  }

  it('calls the legacy handler with raw Buffer headers and Buffer chunks', async () => {
    const seen = await dispatch('/')
    assert.equal(seen.error, null)
    assert.equal(seen.connect, 1)
    assert.equal(seen.status, 201)
    assert.ok(seen.rawHeaders.length >= 4 && seen.rawHeaders.every((h) => Buffer.isBuffer(h)), 'raw headers are Buffers, name and value pairs')
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => (h).toString('latin1').toLowerCase())
    assert.ok(names.includes('x-a'))
    assert.ok(seen.chunks.every((c) => Buffer.isBuffer(c)))
    assert.equal(Buffer.concat(seen.chunks).toString(), 'hello')
    assert.equal(seen.completed, true)
  })

  it('ends a call with onError carrying our own error when onConnect\'s abort is used mid-body', async () => {
    const seen = await dispatch('/big', {}, 1)
    assert.equal(seen.completed, false)
    assert.equal(seen.error?.code, 'TEST_ABORT')
  })

  it('names its failures by the codes forward.ts classifies', async () => {
    const slow = await dispatch('/slow', { headersTimeout: 200, bodyTimeout: 200 })
    assert.equal(slow.error?.code, 'UND_ERR_HEADERS_TIMEOUT')
    const f = new Forwarder({ origin: 'http://127.0.0.1:1', connections: 1, maxResponseBytes: 1024, connectTimeoutMs: 1000 })
    const refused = await f.forward({ method: 'GET', path: '/', headers: {}, body: Buffer.alloc(0), deadline: Date.now() + 5000 })
    await f.close()
    assert.equal(refused.kind, 'error')
    assert.equal(refused.kind === 'error' ? refused.code : '', 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    const g = new Forwarder({ origin, connections: 1, maxResponseBytes: 1024, connectTimeoutMs: 1000 })
    const timedOut = await g.forward({ method: 'GET', path: '/slow', headers: {}, body: Buffer.alloc(0), deadline: Date.now() + 300 })
    const tooLarge = await g.forward({ method: 'GET', path: '/big', headers: {}, body: Buffer.alloc(0), deadline: Date.now() + 5000 })
    await g.close()
    assert.equal(timedOut.kind === 'error' ? timedOut.code : timedOut.kind, 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    assert.equal(tooLarge.kind === 'error' ? tooLarge.code : tooLarge.kind, 'RQ_ERR_RESPONSE_TOO_LARGE')
  })
})
