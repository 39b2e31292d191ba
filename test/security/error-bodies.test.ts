// S15: every answer relayq makes itself, whichever code path writes it (the
// handler, the raw writer for requests the parser refused, a reply timeout,
// the dequeuer's answer for the service), is exactly {"error","detail","code"}
// and tells an outsider nothing about the inside: no stack trace, no broker
// URL, no reply queue name, no IP address.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send, sendNode } from '../helpers/http'
import { freePort } from '../helpers/process'
import { rawExchange } from '../helpers/raw-http'
import { assertNothingLeaks, assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { TcpProxy } from '../helpers/tcp-proxy'
import { waitFor } from '../helpers/wait'

interface Got { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer | string }

describe('S15: relayq\'s own error bodies', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let downDeq: TestDequeuer
  let enq: TestEnqueuer
  let allowList: TestEnqueuer
  let proxied: TestEnqueuer
  let proxy: TcpProxy
  const service = uniqueService('errs')
  const down = uniqueService('errs-down')
  const idle = uniqueService('errs-idle')
  const hold = uniqueService('errs-hold')
  const seen = new Set<string>()

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url, { DOWNSTREAM_TIMEOUT: '0.3', DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false' })
    // A service nobody listens for: the dequeuer answers for it.
    downDeq = await startTestDequeuer(down, `http://127.0.0.1:${await freePort()}`, { DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false' })
    await Promise.all([deq.consuming, downDeq.consuming])
    const ch = await broker.channel()
    await ch.assertQueue(`${idle}_requests`, { durable: false })
    // A consumer that takes requests and never answers: a request to it waits until something else ends it.
    await ch.assertQueue(`${hold}_requests`, { durable: false })
    await ch.consume(`${hold}_requests`, () => {}, { noAck: true })
    const limits = { ENQUEUER_MAX_BODY_BYTES: '100', ENQUEUER_MAX_HEADERS: '10', ENQUEUER_MAX_URL_BYTES: '200', ENQUEUER_MAX_HEADER_BYTES: String(128 * 1024), ENQUEUER_HEADERS_TIMEOUT_MS: '300', ENQUEUER_BODY_TIMEOUT_MS: '600', ENQUEUER_REPLY_TIMEOUT: '5', ENQUEUER_BREAKER_ENABLED: 'false' }
    enq = await startTestEnqueuer(limits)
    allowList = await startTestEnqueuer({ ENQUEUER_SERVICES: service, ASYNC_JOBS: 'false' })
    proxy = new TcpProxy('127.0.0.1', 5672)
    await proxy.start()
    proxied = await startTestEnqueuer({ RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}`, RABBITMQ_RECONNECT_INITIAL_MS: '5000', RABBITMQ_RECONNECT_MAX_MS: '5000', ENQUEUER_REPLY_TIMEOUT: '10', ASYNC_JOBS: 'false' })
  })

  after(async () => {
    const results = enq.context.jobs?.resultsQueue
    for (const e of [proxied, allowList, enq]) await e.close()
    if (results !== undefined) await broker.channel().then(async (ch) => { await ch.deleteQueue(results); await ch.close() }).catch(() => {})
    await proxy.stop()
    await deq.close()
    await downDeq.close()
    await echo.close()
    for (const s of [service, down, idle, hold]) await broker.deleteService(s)
    await broker.close()
  })

  function check (got: Got, status: number, code: string): void {
    const body = assertRelayqError(got, status, code)
    assertNothingLeaks(got.body.toString(), code)
    for (const [name, value] of Object.entries(got.headers)) assertNothingLeaks(`${name}: ${String(value)}`, `header ${name} of ${code}`)
    assert.ok(body.detail.length > 0 && body.detail.length < 300, body.detail)
    seen.add(code)
  }

  const raw = async (port: number, request: string): Promise<Got> => {
    const ex = await rawExchange(port, request, { timeoutMs: 3000, firstResponse: true })
    assert.equal(ex.responses.length, 1, ex.text)
    return ex.responses[0]!
  }

  it('400s: the parser\'s, a bad service name, a bad path, a bad timeout header', async () => {
    check(await raw(enq.port, `POST /${service}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`), 400, 'RQ_ERR_BAD_REQUEST')
    check(await raw(enq.port, `GET /${service}/x HTTP/1.1\r\n\r\n`), 400, 'RQ_ERR_BAD_REQUEST')
    check(await send(`${enq.url}/amq.rabbitmq.reply-to/x`), 400, 'RQ_ERR_INVALID_SERVICE')
    check(await sendNode(`${enq.url}/${service}/../x`), 400, 'RQ_ERR_INVALID_PATH')
    check(await send(`${enq.url}/${service}/x`, { headers: { 'x-relayq-timeout-ms': 'soon' } }), 400, 'RQ_ERR_INVALID_TIMEOUT')
  })

  it('404s: no queue, not on the allow-list, no such job', async () => {
    check(await send(`${enq.url}/${uniqueService('ghost')}/x`), 404, 'RQ_ERR_QUEUE_NOT_FOUND')
    check(await send(`${allowList.url}/${idle}/x`), 404, 'RQ_ERR_SERVICE_NOT_ALLOWED')
    check(await send(`${enq.url}/jobs/00000000-0000-4000-8000-000000000000`), 404, 'RQ_ERR_JOB_NOT_FOUND')
  })

  it('405, 408, 413, 414, 431 (both ways), 501', async () => {
    check(await sendNode(`${enq.url}/${service}/x`, { method: 'TRACE' }), 405, 'RQ_ERR_METHOD_NOT_ALLOWED')
    check(await raw(enq.port, 'CONNECT 127.0.0.1:5672 HTTP/1.1\r\nHost: 127.0.0.1:5672\r\n\r\n'), 405, 'RQ_ERR_METHOD_NOT_ALLOWED')
    const slow = await rawExchange(enq.port, `GET /${service}/x HTTP/1.1\r\nHost: x\r\n`, { timeoutMs: 3000 })
    check(slow.responses[0]!, 408, 'RQ_ERR_REQUEST_TIMEOUT')
    check(await send(`${enq.url}/${service}/x`, { method: 'POST', body: Buffer.alloc(101) }), 413, 'RQ_ERR_BODY_TOO_LARGE')
    check(await send(`${enq.url}/${service}/${'u'.repeat(300)}`), 414, 'RQ_ERR_URI_TOO_LONG')
    const many: Record<string, string> = {}
    for (let i = 0; i < 12; i++) many[`x-h${i}`] = 'v'
    check(await send(`${enq.url}/${service}/x`, { headers: many }), 431, 'RQ_ERR_HEADERS_TOO_LARGE')
    check(await raw(enq.port, `GET /${service}/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(130 * 1024)}\r\n\r\n`), 431, 'RQ_ERR_HEADERS_TOO_LARGE')
    check(await raw(enq.port, `GET /${service}/x HTTP/1.1\r\nHost: x\r\nX-${'n'.repeat(300)}: v\r\n\r\n`), 431, 'RQ_ERR_HEADERS_UNENCODABLE')
    check(await raw(enq.port, `GET /${service}/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`), 501, 'RQ_ERR_UPGRADE_NOT_SUPPORTED')
  })

  it('502s and 504s: the dequeuer\'s answers for the service, the reply timeout', async () => {
    check(await send(`${enq.url}/${down}/x`), 502, 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    echo.behave((req, res) => { setTimeout(() => { void echoJson(req, res) }, 1500) })
    check(await send(`${enq.url}/${service}/slow`), 504, 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    check(await send(`${enq.url}/${service}/slow`, { headers: { 'x-relayq-timeout-ms': '200' } }), 504, 'RQ_ERR_REPLY_TIMEOUT')
    echo.behave(echoJson)
  })

  it('503s: no consumer, and the broker gone before and during a request (502)', async () => {
    check(await send(`${enq.url}/${idle}/x`), 503, 'RQ_ERR_NO_CONSUMERS')
    // The connection drops while a request waits for its reply: 502, the request may have run.
    const waiting = send(`${proxied.url}/${hold}/cut`)
    await waitFor(async () => proxied.context.pool.pendingReplies === 1 && /enqueuer_requests_published_total\{service="[^"]+"\} 1/.test((await send(`${proxied.url}/metrics`)).body.toString()), { what: 'the request to be published and confirmed' })
    proxy.setMode('refuse')
    proxy.cut()
    check(await waiting, 502, 'RQ_ERR_CONNECTION_LOST')
    await waitFor(() => !proxied.context.connection.up)
    check(await send(`${proxied.url}/${service}/x`), 503, 'RQ_ERR_BROKER_UNAVAILABLE')
  })

  it('the admin port answers a request its parser refused in JSON too', async () => {
    const adminPort = Number(new URL(deq.adminUrl).port)
    check(await raw(adminPort, 'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'), 400, 'RQ_ERR_BAD_REQUEST')
    check(await raw(adminPort, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`), 431, 'RQ_ERR_HEADERS_TOO_LARGE')
  })

  it('the sweep met every status the checklist names', () => {
    for (const code of ['RQ_ERR_BAD_REQUEST', 'RQ_ERR_QUEUE_NOT_FOUND', 'RQ_ERR_METHOD_NOT_ALLOWED', 'RQ_ERR_BODY_TOO_LARGE', 'RQ_ERR_URI_TOO_LONG', 'RQ_ERR_HEADERS_TOO_LARGE', 'RQ_ERR_UPGRADE_NOT_SUPPORTED', 'RQ_ERR_BROKER_UNAVAILABLE', 'RQ_ERR_REPLY_TIMEOUT']) {
      assert.ok(seen.has(code), `${code} not checked`)
    }
  })
})
