// S6: size limits. Each limit answers its own JSON status before anything is
// published; the boundary value itself still passes. Headers that fit the
// HTTP limits but not an AMQP message (a 256+ byte name, a table over 64 KiB
// once encoded) get a JSON 431 too, never a RangeError or a crash, and the
// enqueuer keeps its broker connection. (The plain 413s also appear in
// test/integration/enqueuer-errors.test.ts; here each adds the proof that
// nothing was published.)
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '../../src/config/load'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { BrokerTraffic } from '../helpers/broker-traffic'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep } from '../helpers/wait'

const LIMITS = { ENQUEUER_MAX_BODY_BYTES: '1000', ENQUEUER_MAX_HEADERS: '20', ENQUEUER_MAX_HEADER_BYTES: '4096', ENQUEUER_MAX_URL_BYTES: '1024' }

function headerLines (count: number, valueBytes = 8): string {
  let s = ''
  for (let i = 0; i < count; i++) s += `X-H${i}: ${'v'.repeat(valueBytes)}\r\n`
  return s
}

describe('S6: size limits', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let small: TestEnqueuer
  let wide: TestEnqueuer
  const traffic: BrokerTraffic[] = []
  const service = uniqueService('limits')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    small = await startTestEnqueuer({ ...LIMITS, ASYNC_JOBS: 'false' })
    // Limits raised past what one AMQP header table holds (64 KiB), as an operator may.
    wide = await startTestEnqueuer({ ENQUEUER_MAX_HEADER_BYTES: String(256 * 1024), ENQUEUER_MAX_URL_BYTES: String(256 * 1024), ASYNC_JOBS: 'false' })
    for (const e of [small, wide]) assert.equal((await send(`${e.url}/${service}/warm`)).status, 200)
    traffic.push(new BrokerTraffic(small.context.connection.model!), new BrokerTraffic(wide.context.connection.model!))
  })

  after(async () => {
    for (const t of traffic) t.stop()
    await small.close()
    await wide.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  /** Runs a refusal and checks nothing left either enqueuer or reached the service. */
  async function refused<T> (fn: () => Promise<T>): Promise<T> {
    for (const t of traffic) t.reset()
    const n = echo.received.length
    const result = await fn()
    await sleep(100)
    for (const t of traffic) assert.deepEqual(t.publishes, [], 'something was published')
    assert.equal(echo.received.length, n, 'something reached the service')
    return result
  }

  it('the default limits fit a message in RabbitMQ 4.x\'s default max_message_size (16 MiB)', () => {
    const defaults = loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer!
    assert.ok(defaults.maxBodyBytes + defaults.maxHeaderBytes < 16 * 1024 * 1024)
  })

  it('a body exactly at ENQUEUER_MAX_BODY_BYTES passes', async () => {
    const res = await send(`${small.url}/${service}/b`, { method: 'POST', body: Buffer.alloc(1000, 1) })
    assert.equal(res.status, 200)
    assert.equal(res.json<{ length: number }>().length, 1000)
  })

  it('413 for a declared Content-Length over the limit, answered before a byte of the body is sent', async () => {
    const ex = await refused(() => rawExchange(small.port, `POST /${service}/b HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n`, { timeoutMs: 3000 }))
    assert.equal(ex.responses.length, 1, ex.text)
    assertRelayqError(ex.responses[0]!, 413, 'RQ_ERR_BODY_TOO_LARGE')
    assert.equal(ex.responses[0]!.headers.connection, 'close')
  })

  it('413 for a chunked body once it passes the limit, the rest unread', async () => {
    const chunks = Array.from({ length: 40 }, () => '100\r\n' + 'x'.repeat(256) + '\r\n')
    const ex = await refused(() => rawExchange(small.port, [`POST /${service}/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`, ...chunks], { gapMs: 10, timeoutMs: 3000 }))
    assert.equal(ex.responses.length, 1, ex.text)
    assertRelayqError(ex.responses[0]!, 413, 'RQ_ERR_BODY_TOO_LARGE')
    assert.ok(ex.ms < 300, `cut after ${ex.ms} ms, not after the whole body`)
  })

  it('ENQUEUER_MAX_HEADERS headers pass; one more gets a JSON 431', async () => {
    const ok = await rawExchange(small.port, `GET /${service}/h HTTP/1.1\r\nHost: x\r\n${headerLines(19)}\r\n`, { firstResponse: true })
    assert.equal(ok.responses[0]?.status, 200, ok.text)
    const ex = await refused(() => rawExchange(small.port, `GET /${service}/h HTTP/1.1\r\nHost: x\r\n${headerLines(20)}\r\n`, { timeoutMs: 3000 }))
    assertRelayqError(ex.responses[0]!, 431, 'RQ_ERR_HEADERS_TOO_LARGE')
    assert.equal(ex.closed, true)
  })

  it('headers over ENQUEUER_MAX_HEADER_BYTES get a JSON 431 from the parser', async () => {
    const ex = await refused(() => rawExchange(small.port, `GET /${service}/h HTTP/1.1\r\nHost: x\r\n${headerLines(5, 1000)}\r\n`, { timeoutMs: 3000 }))
    assertRelayqError(ex.responses[0]!, 431, 'RQ_ERR_HEADERS_TOO_LARGE')
    assert.equal(ex.closed, true)
  })

  it('a target over ENQUEUER_MAX_URL_BYTES gets a JSON 414; one over ENQUEUER_MAX_HEADER_BYTES a JSON 431', async () => {
    const at = `/${service}/${'u'.repeat(1024 - service.length - 2)}`
    assert.equal(at.length, 1024)
    assert.equal((await rawExchange(small.port, `GET ${at} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true })).responses[0]?.status, 200)
    const long = await refused(() => rawExchange(small.port, `GET ${at}u HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true }))
    assertRelayqError(long.responses[0]!, 414, 'RQ_ERR_URI_TOO_LONG')
    // The request line counts against the header bytes first: Node's parser answers before relayq sees the target.
    const huge = await refused(() => rawExchange(small.port, `GET /${service}/${'u'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`, { timeoutMs: 3000 }))
    assertRelayqError(huge.responses[0]!, 431, 'RQ_ERR_HEADERS_TOO_LARGE')
  })

  const unencodable: Array<[string, () => string]> = [
    ['a 300-byte header name', () => `X-${'n'.repeat(298)}: v\r\n`],
    ['a 70 KiB header table', () => headerLines(70, 1024)],
    ['40 KiB of latin1 bytes, 80 KiB once UTF-8 encoded', () => `X-Latin: ${'\u00e9'.repeat(40 * 1024)}\r\n`],
    ['a 70 KiB request target (it travels as x-http-path)', () => ''],
  ]
  for (const [name, headers] of unencodable) {
    it(`${name}: a JSON 431, no crash, the same broker connection, and the next request served`, async () => {
      const model = wide.context.connection.model
      const target = name.includes('target') ? `/${service}/${'t'.repeat(70 * 1024)}` : `/${service}/u`
      const ex = await refused(() => rawExchange(wide.port, Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\n${headers()}\r\n`, 'latin1'), { timeoutMs: 5000, firstResponse: true }))
      assert.equal(ex.responses.length, 1, ex.text.slice(0, 300))
      const body = assertRelayqError(ex.responses[0]!, 431, 'RQ_ERR_HEADERS_UNENCODABLE')
      assert.doesNotMatch(body.detail, /RangeError|out of range|encoding buffer/)
      assert.equal(wide.context.connection.model, model, 'the broker connection was replaced')
      assert.equal(wide.context.connection.up, true)
      const metrics = (await send(`${wide.url}/metrics`)).body.toString()
      assert.match(metrics, /^relayq_broker_reconnects_total\{connection="enqueuer"\} 0$/m)
      assert.equal(wide.admission.inflight, 0)
      assert.equal(wide.context.pool.pendingReplies, 0)
      assert.equal((await send(`${wide.url}/${service}/after`)).status, 200)
    })
  }
})
