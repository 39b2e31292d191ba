// A bounded fuzz run against the enqueuer bundle: 2,000 raw-socket requests
// of random bytes, random header sets and mutated valid requests, in well
// under 30 s. The process stays the same process; every answer starts with a
// valid status line, relayq's own answers carry their JSON; and a request
// reaches the service only if the client got the service's answer. The seed
// is printed on failure (RELAYQ_FUZZ_SEED replays a run).
import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { hasValidStatusLine, rawExchange, type RawExchange } from '../helpers/raw-http'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'

const TOTAL = 2000
const CONCURRENCY = 48
const SEED = Number(process.env.RELAYQ_FUZZ_SEED ?? randomInt(2 ** 31))

/** mulberry32: small, seedable, good enough to pick fuzz inputs. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'BREW', 'get', 'PRI', 'M-SEARCH', 'PROPFIND']
const NAMES = ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect', 'te', 'trailer', 'keep-alive', 'proxy-authorization',
  'x-http-method', 'x-http-path', 'x-status-code', 'x-relayq-timeout-ms', 'x-relayq-attempts', 'x-death', 'x-delivery-count', 'prefer', 'authorization',
  'content-type', 'cookie', 'traceparent', 'x-forwarded-for', 'x-a', 'X-Mixed-Case', 'a'.repeat(300), 'x y', 'x:y', '', 'x\u00e9']
const VALUES = ['', ' ', 'chunked', 'chunked, identity', 'gzip', '0', '-1', '10', '99999999999', 'close', 'upgrade', 'keep-alive, x-a', 'websocket', 'h2c',
  '100-continue', 'respond-async', 'DELETE', '/../admin', '5', 'abc', '\u00ff\u0080', '\u2028', '{"level":"fatal"}', 'v'.repeat(5000), 'a\tb']
/** Answers that come after the request was published: the service may have run it. Every other code is a refusal. */
const ACCEPTED = new Set(['RQ_ERR_REPLY_TIMEOUT', 'RQ_ERR_PUBLISH_TIMEOUT', 'RQ_ERR_CONNECTION_LOST', 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', 'RQ_ERR_DOWNSTREAM_TIMEOUT', 'RQ_ERR_DOWNSTREAM_STATUS', 'RQ_ERR_RESPONSE_TOO_LARGE', 'RQ_ERR_DEADLINE_EXCEEDED'])
const TARGETS = ['/S/fz', '/S/fz/../x', '/S/fz%2e%2e', '//S', '/amq.gen/x', '*', 'http://evil/S/x', '/S/fz?x=1', '/jobs/abc', '/metrics', '/readyz', '/S/fz#f', '/S/fz/%00']

describe(`fuzz (seed ${SEED})`, () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: RelayProcess
  let port: number
  const service = uniqueService('fuzz')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false' })
    await deq.consuming
    port = await freePort()
    enq = spawnRelay({
      RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ASYNC_JOBS: 'false', ENQUEUER_BREAKER_ENABLED: 'false',
      ENQUEUER_HEADERS_TIMEOUT_MS: '800', ENQUEUER_BODY_TIMEOUT_MS: '1200', ENQUEUER_MAX_BODY_BYTES: '4096', ENQUEUER_REPLY_TIMEOUT: '5',
    })
    await waitReady(`http://127.0.0.1:${port}`, 20000)
  })

  after(async () => {
    enq?.kill('SIGKILL')
    await enq?.exited
    await deq?.close()
    await echo?.close()
    await broker?.deleteService(service)
    await broker?.close()
  })

  it(`${TOTAL} random requests: the process survives, every answer is well-formed, refused requests never reach the service`, async () => {
    const rnd = prng(SEED)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
    const int = (n: number): number => Math.floor(rnd() * n)
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)))

    /** One input; `token` is set when the request line is intact and names the service, so the service can be matched. */
    const make = (i: number): { payload: Buffer, token: string | null, head: boolean } => {
      const token = `fz${i}x${int(1e9).toString(36)}`
      const kind = int(10)
      if (kind === 0) return { payload: bytes(1 + int(2000)), token: null, head: false }
      const method = pick(METHODS)
      const target = pick(TARGETS).replace('S', service).replace('fz', token)
      let head = `${method} ${target} HTTP/1.${int(5) === 0 ? 0 : 1}\r\n`
      const lines: string[] = []
      if (int(10) !== 0) lines.push('Host: x')
      for (let h = int(12); h > 0; h--) lines.push(`${pick(NAMES)}: ${pick(VALUES)}`)
      if (int(4) === 0) lines.push(`X-Many: ${'m'.repeat(int(3000))}`)
      const body = int(3) === 0 ? bytes(int(6000)) : Buffer.alloc(0)
      if (int(2) === 0) lines.push(`Content-Length: ${int(4) === 0 ? int(9000) : body.length}`)
      head += lines.join(int(20) === 0 ? '\n' : '\r\n') + '\r\n\r\n'
      let payload = Buffer.concat([Buffer.from(head, 'latin1'), body])
      if (kind === 1) {
        // Mutate a few bytes after the request line, where the token is not.
        const from = head.indexOf('\r\n') + 2
        payload = Buffer.from(payload)
        for (let m = 1 + int(4); m > 0 && payload.length > from; m--) payload[from + int(payload.length - from)] = pick([0, 9, 10, 13, 32, 58, 127, 255, int(256)])
      }
      if (kind === 2) payload = Buffer.concat([payload, bytes(int(200))])
      return { payload, token: target.includes(token) ? token : null, head: method === 'HEAD' }
    }

    const started = performance.now()
    const results: Array<{ i: number, token: string | null, head: boolean, ex: RawExchange }> = []
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < TOTAL) {
        const i = next++
        const { payload, token, head } = make(i)
        results.push({ i, token, head, ex: await rawExchange(port, payload, { timeoutMs: 3000, firstResponse: true, head }) })
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const seconds = (performance.now() - started) / 1000
    assert.ok(seconds < 30, `the run took ${seconds.toFixed(1)} s`)

    const servedTokens = new Set<string>()
    const statuses: Record<string, number> = {}
    for (const { i, token, head, ex } of results) {
      if (ex.text === '') continue
      assert.ok(hasValidStatusLine(ex.text), `input ${i}: not a status line: ${JSON.stringify(ex.text.slice(0, 120))}`)
      for (const r of ex.responses) {
        statuses[r.status] = (statuses[r.status] ?? 0) + 1
        const code = r.headers['x-relayq-error']
        if (code !== undefined) {
          // An answer to HEAD has no body.
          if (!head) {
            const body = JSON.parse(r.body) as Record<string, unknown>
            assert.equal(body.code, code, `input ${i}`)
            assert.deepEqual(Object.keys(body).sort(), ['code', 'detail', 'error'])
          }
          // Published, then no answer in time (a caller may ask for 1 ms): the service may still run it.
          if (token !== null && ACCEPTED.has(String(code))) servedTokens.add(token)
        } else if (token !== null && r.headers['x-correlation-id'] !== undefined) {
          // Carried back from the service (relayq's own answers carry x-relayq-error).
          servedTokens.add(token)
        }
      }
    }
    // Every call the service got belongs to a request the client saw accepted: never to a refused one.
    const reached = echo.received.map((r) => /fz\d+x[0-9a-z]+/.exec(r.url)?.[0] ?? r.url)
    const strays = reached.filter((t) => !servedTokens.has(t))
    assert.deepEqual(strays.slice(0, 5), [], `${strays.length} calls reached the service for requests relayq refused or never answered`)
    const answered = results.filter((r) => r.ex.text !== '').length
    assert.ok(answered > TOTAL * 0.8, `only ${answered} of ${TOTAL} inputs got any answer (statuses ${JSON.stringify(statuses)})`)
    assert.ok(servedTokens.size > 0, 'no input was valid enough to be served: the fuzz is too blunt')

    // The same process, still serving, nothing on stderr, every log line JSON.
    assert.equal(enq.child.exitCode, null, enq.output().slice(-2000))
    assert.equal(enq.child.signalCode, null)
    assert.equal((await send(`http://127.0.0.1:${port}/${service}/after-fuzz`)).status, 200)
    assert.equal((await send(`http://127.0.0.1:${port}/readyz`)).status, 200)
    assert.doesNotThrow(() => enq.logs())
    const stderr = enq.output().split('\n').filter((l) => l !== '' && !l.startsWith('{'))
    assert.deepEqual(stderr, [])
    const pid = enq.logs().find((l) => l.msg === 'starting relayq')?.pid
    assert.equal(pid, enq.pid, 'the enqueuer restarted')
  })
})
