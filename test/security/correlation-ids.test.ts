// Every answer carries x-correlation-id, refusals made before anything is
// published included; a client's own x-correlation-id (or x-request-id) is the
// one it gets back, but never the id on the message, so a chosen id cannot
// capture another request's reply.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Channel } from 'amqplib'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send, sendNode } from '../helpers/http'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

interface Got { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer | string }

describe('x-correlation-id on every answer', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let jobsEnq: TestEnqueuer
  let capture: Channel
  const service = uniqueService('cid')
  const idle = uniqueService('cid-idle')
  const held = uniqueService('cid-held')
  const onMessage: string[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    capture = await broker.channel()
    await capture.assertQueue(`${idle}_requests`, { durable: false })
    // A consumer that records the id on each message and never answers.
    await capture.assertQueue(`${held}_requests`, { durable: false })
    await capture.consume(`${held}_requests`, (msg) => { if (msg !== null) onMessage.push(String(msg.properties.correlationId)) }, { noAck: true })
    enq = await startTestEnqueuer({ ENQUEUER_MAX_BODY_BYTES: '100', ENQUEUER_MAX_HEADERS: '10', ENQUEUER_MAX_URL_BYTES: '200', ENQUEUER_MAX_HEADER_BYTES: String(64 * 1024), ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false' })
    jobsEnq = await startTestEnqueuer({ ASYNC_REQUIRE_AUTH: 'true' })
  })

  after(async () => {
    const results = jobsEnq.context.jobs?.resultsQueue
    await enq.close()
    await jobsEnq.close()
    if (results !== undefined) await capture.deleteQueue(results).catch(() => {})
    await capture.close().catch(() => {})
    await deq.close()
    await echo.close()
    for (const s of [service, idle, held]) await broker.deleteService(s)
    await broker.close()
  })

  const raw = async (request: string): Promise<Got> => {
    const ex = await rawExchange(enq.port, request, { timeoutMs: 3000, firstResponse: true })
    assert.equal(ex.responses.length, 1, ex.text)
    return ex.responses[0]!
  }
  const many: Record<string, string> = {}
  for (let i = 0; i < 12; i++) many[`x-h${i}`] = 'v'

  // [status, code, how]: each refusal relayq makes before publishing.
  const refusals: Array<[number, string, (headers: Record<string, string>) => Promise<Got>]> = [
    [400, 'RQ_ERR_INVALID_SERVICE', (h) => send(`${enq.url}/amq.rabbitmq.reply-to/x`, { headers: h })],
    [400, 'RQ_ERR_INVALID_TIMEOUT', (h) => send(`${enq.url}/${service}/x`, { headers: { ...h, 'x-relayq-timeout-ms': 'soon' } })],
    [401, 'RQ_ERR_UNAUTHORIZED', (h) => send(`${jobsEnq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { ...h, prefer: 'respond-async' } })],
    [404, 'RQ_ERR_QUEUE_NOT_FOUND', (h) => send(`${enq.url}/${uniqueService('ghost')}/x`, { headers: h })],
    [405, 'RQ_ERR_METHOD_NOT_ALLOWED', (h) => sendNode(`${enq.url}/${service}/x`, { method: 'TRACE', headers: h })],
    [413, 'RQ_ERR_BODY_TOO_LARGE', (h) => send(`${enq.url}/${service}/x`, { method: 'POST', body: Buffer.alloc(101), headers: h })],
    [414, 'RQ_ERR_URI_TOO_LONG', (h) => send(`${enq.url}/${service}/${'u'.repeat(300)}`, { headers: h })],
    [431, 'RQ_ERR_HEADERS_TOO_LARGE', (h) => send(`${enq.url}/${service}/x`, { headers: { ...h, ...many } })],
    [503, 'RQ_ERR_NO_CONSUMERS', (h) => send(`${enq.url}/${idle}/x`, { headers: h })],
  ]

  for (const [status, code, request] of refusals) {
    it(`${status} ${code}: a new id, or the client's own`, async () => {
      const plain = await request({})
      assertRelayqError(plain, status, code)
      assert.match(String(plain.headers['x-correlation-id']), UUID)
      const mine = await request({ 'x-correlation-id': `client-${status}-a1` })
      assertRelayqError(mine, status, code)
      assert.equal(mine.headers['x-correlation-id'], `client-${status}-a1`)
    })
  }

  // Refused by Node's parser or at the socket: no request to take an id from, so a new one.
  const rawRefusals: Array<[number, string, string]> = [
    [400, 'RQ_ERR_BAD_REQUEST', `POST /${service}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`],
    [400, 'RQ_ERR_BAD_REQUEST', `GET /${service}/x HTTP/1.1\r\n\r\n`],
    [405, 'RQ_ERR_METHOD_NOT_ALLOWED', 'CONNECT 127.0.0.1:5672 HTTP/1.1\r\nHost: 127.0.0.1:5672\r\n\r\n'],
    [431, 'RQ_ERR_HEADERS_TOO_LARGE', `GET /${service}/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(70 * 1024)}\r\n\r\n`],
    [501, 'RQ_ERR_UPGRADE_NOT_SUPPORTED', `GET /${service}/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`],
  ]
  for (const [status, code, request] of rawRefusals) {
    it(`${status} ${code} (${request.split(' ')[0]!} at the parser): a new id`, async () => {
      const got = await raw(request)
      assertRelayqError(got, status, code)
      assert.match(String(got.headers['x-correlation-id']), UUID)
    })
  }

  it('403 and 404 on /jobs carry one too', async () => {
    const accepted = await send(`${jobsEnq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', authorization: 'Bearer alice' } })
    assert.equal(accepted.status, 202)
    const { job_id: id } = accepted.json<{ job_id: string }>()
    const other = await send(`${jobsEnq.url}/jobs/${id}`, { headers: { authorization: 'Bearer bob' } })
    assertRelayqError(other, 403, 'RQ_ERR_FORBIDDEN')
    assert.match(String(other.headers['x-correlation-id']), UUID)
    const none = await send(`${jobsEnq.url}/jobs/00000000-0000-4000-8000-000000000000`, { headers: { authorization: 'Bearer alice' } })
    assert.match(String(none.headers['x-correlation-id']), UUID)
  })

  it('a served request returns the client\'s x-correlation-id (or x-request-id); the service still sees the header as sent', async () => {
    const a = await send(`${enq.url}/${service}/x`, { headers: { 'x-correlation-id': 'order-42' } })
    assert.equal(a.status, 200)
    assert.equal(a.headers['x-correlation-id'], 'order-42')
    assert.equal(a.json<{ headers: Record<string, string> }>().headers['x-correlation-id'], 'order-42')
    const b = await send(`${enq.url}/${service}/x`, { headers: { 'x-request-id': 'req-7' } })
    assert.equal(b.headers['x-correlation-id'], 'req-7')
    const bad = await send(`${enq.url}/${service}/x`, { headers: { 'x-correlation-id': 'has space' } })
    assert.match(String(bad.headers['x-correlation-id']), UUID, 'an id relayq will not echo is replaced')
  })

  it('the message never carries the client\'s id: two requests with one chosen id each get their own reply', async () => {
    const timedOut = await send(`${enq.url}/${held}/x`, { headers: { 'x-correlation-id': 'chosen', 'x-relayq-timeout-ms': '300' } })
    assertRelayqError(timedOut, 504, 'RQ_ERR_REPLY_TIMEOUT')
    assert.equal(timedOut.headers['x-correlation-id'], 'chosen')
    assert.equal(onMessage.length, 1)
    assert.match(onMessage[0]!, UUID, 'the message carries relayq\'s own id')
    echo.behave((req, res) => { setTimeout(() => { void echoJson(req, res) }, 200) })
    try {
      const [one, two] = await Promise.all(['one', 'two'].map((p) => send(`${enq.url}/${service}/${p}`, { headers: { 'x-correlation-id': 'same' } })))
      assert.equal(one!.json<{ url: string }>().url, '/one')
      assert.equal(two!.json<{ url: string }>().url, '/two')
    } finally {
      echo.behave(echoJson)
    }
  })
})
