// S5: request smuggling and desync. Every ambiguous framing of the A.5 matrix
// (and a few more) gets one JSON 400 and a closed connection, and nothing is
// published: the enqueuer's AMQP frames, the service and the queue all stay
// empty. The bundle never turns on Node's lenient parser.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { BrokerTraffic } from '../helpers/broker-traffic'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { BUNDLE } from '../helpers/process'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep } from '../helpers/wait'

/** [name, raw request]; `S` is replaced by the service path. The smuggled part, if any, targets /S/smuggled. */
const MATRIX: Array<[string, string]> = [
  ['Content-Length and Transfer-Encoding (CL.TE)', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /S/smuggled HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['Transfer-Encoding before Content-Length (TE.CL)', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2c\r\nGET /S/smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n'],
  ['two different Content-Lengths', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde'],
  ['two equal Content-Lengths', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc'],
  ['a Content-Length list', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc'],
  ['Transfer-Encoding: chunked, identity', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
  ['Transfer-Encoding: gzip (chunked not last)', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc'],
  ['a space before the colon', 'GET /S/x HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n'],
  ['a space before the colon of Transfer-Encoding', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc'],
  ['obs-fold (a continuation line)', 'GET /S/x HTTP/1.1\r\nHost: x\r\nX-Foo: bar\r\n baz\r\n\r\n'],
  ['obs-fold of Transfer-Encoding', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc'],
  ['bare LF line endings', 'GET /S/x HTTP/1.1\nHost: x\n\n'],
  ['a bare LF inside the headers', 'GET /S/x HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n'],
  ['a bare CR inside a value', 'GET /S/x HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n'],
  ['a NUL inside a value', 'GET /S/x HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n'],
  ['a space inside a header name', 'GET /S/x HTTP/1.1\r\nHost: x\r\nX Foo: bar\r\n\r\n'],
  ['no Host on HTTP/1.1', 'GET /S/x HTTP/1.1\r\n\r\n'],
  ['an invalid chunk size', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
  ['an overflowing chunk size', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n'],
  ['a chunk longer than its size', 'POST /S/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n'],
  ['a negative Content-Length', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc'],
  ['a signed Content-Length', 'POST /S/x HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc'],
  ['the HTTP/2 preface on an HTTP/1 port', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
]

describe('S5: request smuggling', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let traffic: BrokerTraffic
  const service = uniqueService('smuggle')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    enq = await startTestEnqueuer({ ASYNC_JOBS: 'false' })
    // The queue check is cached first, so the refusals below are the parser's, not a cold cache.
    assert.equal((await send(`${enq.url}/${service}/warm`)).status, 200)
    traffic = new BrokerTraffic(enq.context.connection.model!)
  })

  after(async () => {
    traffic.stop()
    await enq.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  for (const [name, raw] of MATRIX) {
    it(`${name}: one JSON 400, the connection closed, nothing published`, async () => {
      traffic.reset()
      const n = echo.received.length
      const ex = await rawExchange(enq.port, raw.replaceAll('/S/', `/${service}/`), { timeoutMs: 3000 })
      assert.equal(ex.closed, true, 'the connection stayed open')
      assert.equal(ex.responses.length, 1, `expected one response, got: ${JSON.stringify(ex.text)}`)
      assertRelayqError(ex.responses[0]!, 400, 'RQ_ERR_BAD_REQUEST')
      await sleep(100)
      assert.deepEqual(traffic.publishes, [])
      assert.equal(echo.received.length, n)
    })
  }

  it('a malformed request pipelined behind a valid one: the valid one\'s answer comes first, then the connection closes', async () => {
    // The first request is still waiting for its reply when the second breaks the parser.
    echo.behave((req, res) => { setTimeout(() => { void echoJson(req, res) }, 300) })
    try {
      traffic.reset()
      const n = echo.received.length
      const ex = await rawExchange(enq.port, `GET /${service}/first HTTP/1.1\r\nHost: x\r\n\r\nPOST /${service}/second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, { timeoutMs: 3000 })
      assert.equal(ex.closed, true)
      assert.equal(ex.responses.length, 1, ex.text)
      const first = ex.responses[0]!
      assert.equal(first.status, 200, 'the client would read a refusal as the first request\'s answer')
      assert.equal(first.headers['x-relayq-error'], undefined)
      assert.equal(JSON.parse(first.body).url, '/first')
      assert.equal(first.headers.connection, 'close')
      assert.deepEqual(echo.received.slice(n).map((r) => r.url), ['/first'])
      assert.deepEqual(traffic.publishes.map((p) => p.routingKey), [`${service}_requests`])
    } finally {
      echo.behave(echoJson)
    }
  })

  it('CONNECT (relayq is no forward proxy): a JSON 405 and a closed connection, nothing published', async () => {
    traffic.reset()
    const ex = await rawExchange(enq.port, 'CONNECT 127.0.0.1:5672 HTTP/1.1\r\nHost: 127.0.0.1:5672\r\n\r\n', { timeoutMs: 3000 })
    assert.equal(ex.closed, true)
    assert.equal(ex.responses.length, 1, JSON.stringify(ex.text))
    assertRelayqError(ex.responses[0]!, 405, 'RQ_ERR_METHOD_NOT_ALLOWED')
    assert.deepEqual(traffic.publishes, [])
  })

  it('the spy sees a valid request\'s publish, and nothing of the above is in the queue', async () => {
    traffic.reset()
    assert.equal((await send(`${enq.url}/${service}/valid`, { method: 'POST', body: 'abc' })).status, 200)
    assert.deepEqual(traffic.publishes.map((p) => p.routingKey), [`${service}_requests`])
    assert.deepEqual(echo.received.map((r) => r.url), ['/warm', '/first', '/valid'])
    assert.equal(await broker.depth(`${service}_requests`), 0)
  })

  it('the bundle never enables Node\'s lenient HTTP parser', () => {
    assert.ok(existsSync(BUNDLE), `${BUNDLE} is missing: run node scripts/build.mjs first`)
    const code = readFileSync(BUNDLE, 'utf8')
    assert.doesNotMatch(code, /insecureHTTPParser\s*[:=]\s*(?:true|!0|1)\b/)
    assert.doesNotMatch(code, /insecure-http-parser/)
    // The option is there, set to false (minified: !1): the grep above looks at the right thing.
    assert.match(code, /insecureHTTPParser\s*:\s*(?:false|!1)/)
  })
})
