// Hostile replies: a test acting as a hostile dequeuer consumes a service's
// queue and publishes crafted replies to the enqueuer's direct reply-to
// address. A reply costs at most its own request: its headers are checked as
// HTTP response headers before anything is written, and nothing from one
// delivery can close the publishing channel that other services' requests
// wait on.
import assert from 'node:assert/strict'
import { ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import type { Channel, ConsumeMessage } from 'amqplib'
import { Agent } from 'undici'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

type Reply = { headers: Record<string, unknown>, body?: Buffer }

describe('hostile replies', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let hostileCh: Channel
  let agent: Agent
  const service = uniqueService('calm')
  const hostile = uniqueService('hostile')
  /** What the hostile dequeuer answers next. */
  let nextReply: Reply | ((msg: ConsumeMessage) => Reply) = { headers: { 'x-status-code': '200' } }
  /** The calm service holds its answers until the test lets them go, so they are all still waiting when the hostile replies come. */
  let letGo: () => void = () => {}
  let held: Promise<void> = Promise.resolve()

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      const answer = (): void => { void echoJson(req, res) }
      if ((req.url ?? '').includes('/calm-')) void held.then(answer)
      else answer()
    })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    hostileCh = await broker.channel()
    await hostileCh.assertQueue(`${hostile}_requests`, { durable: false, autoDelete: true })
    await hostileCh.consume(`${hostile}_requests`, (msg: ConsumeMessage | null) => {
      if (msg === null) return
      const { replyTo, correlationId } = msg.properties as { replyTo: string, correlationId: string }
      const reply = typeof nextReply === 'function' ? nextReply(msg) : nextReply
      hostileCh.sendToQueue(replyTo, reply.body ?? Buffer.alloc(0), { correlationId, headers: reply.headers })
    }, { noAck: true })
    // One publishing channel: every request of both services waits on it.
    enq = await startTestEnqueuer({ ENQUEUER_POOL_SIZE: '1', ASYNC_JOBS: 'false' })
    agent = new Agent({ connections: 30 })
    assert.equal((await send(`${enq.url}/${service}/warm`)).status, 200)
  })

  after(async () => {
    letGo()
    await agent.close()
    await enq.close()
    await deq.close()
    await echo.close()
    await hostileCh.close().catch(() => {})
    await broker.deleteService(service)
    await broker.close()
  })

  async function hostileHead (reply: Reply): Promise<Awaited<ReturnType<typeof rawExchange>>> {
    nextReply = reply
    return rawExchange(enq.port, `HEAD /${hostile}/x HTTP/1.1\r\nHost: x\r\n\r\n`, { head: true, firstResponse: true, timeoutMs: 5000 })
  }

  it('a HEAD reply whose content-length carries a line break, sent while 20 requests to another service wait on the same channel: all 20 succeed', async () => {
    const model = enq.context.connection.model
    held = new Promise((resolve) => { letGo = resolve })
    const calm = Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/calm-${i}`, { dispatcher: agent }))
    // The 20 are published, and held by the service, before the hostile replies arrive.
    await waitFor(() => enq.context.pool.pendingReplies >= 20, { what: '20 requests waiting for their replies' })
    const bad = await Promise.all([
      hostileHead({ headers: { 'x-status-code': '200', 'content-length': '1\r\nx-injected: yes' } }),
      hostileHead({ headers: { 'x-status-code': '200', 'content-length': Buffer.from('2\r\n\r\nHTTP/1.1 200 OK') } }),
    ])
    letGo()
    const answers = await Promise.all(calm)
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200), answers.map((a) => a.body.toString()).join('\n'))
    for (const ex of bad) {
      assert.equal(ex.responses.length, 1, ex.text)
      assert.doesNotMatch(ex.text, /x-injected/i)
      assert.equal(ex.responses[0]!.headers['content-length'], undefined, ex.text)
    }
    assert.equal(enq.context.connection.model, model, 'the broker connection was replaced')
    const metrics = (await send(`${enq.url}/metrics`)).body.toString()
    assert.doesNotMatch(metrics, /reason="connection_lost"/)
  })

  it('HEAD: a content-length that is not a non-negative integer makes the reply malformed (502); a valid one is kept', async () => {
    for (const bad of ['abc', '5, 6', '-1', '1e3', '0x10', ' 7', '99999999999999999999', '']) {
      const ex = await hostileHead({ headers: { 'x-status-code': '200', 'content-length': bad } })
      assert.equal(ex.responses.length, 1, ex.text)
      assert.equal(ex.responses[0]?.status, 502, `${JSON.stringify(bad)}: ${ex.text}`)
      assert.equal(ex.responses[0].headers['x-relayq-error'], 'RQ_ERR_MALFORMED_REPLY', ex.text)
    }
    const ok = await hostileHead({ headers: { 'x-status-code': '200', 'content-length': '1234' } })
    assert.equal(ok.responses[0]!.headers['content-length'], '1234', ok.text)
  })

  it('hop-by-hop, framing and invalid headers in a reply never reach the client; the body is framed by relayq', async () => {
    nextReply = {
      headers: {
        'x-status-code': '200',
        'transfer-encoding': 'chunked',
        connection: 'keep-alive',
        'keep-alive': 'timeout=1',
        upgrade: 'h2c',
        'x-bad-value': 'a\u0100b',
        'x-nul': 'a\u0000b',
        'x-kept': 'yes',
      },
      body: Buffer.from('hello'),
    }
    const ex = await rawExchange(enq.port, `GET /${hostile}/x HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true, timeoutMs: 5000 })
    const res = ex.responses[0]!
    assert.equal(res.status, 200, ex.text)
    assert.equal(res.body, 'hello')
    assert.equal(res.headers['content-length'], '5')
    for (const h of ['transfer-encoding', 'upgrade', 'x-bad-value', 'x-nul']) assert.equal(res.headers[h], undefined, `${h}: ${ex.text}`)
    // Node writes its own Keep-Alive; the service's must not be beside it.
    assert.doesNotMatch(ex.text, /timeout=1/)
    assert.equal(res.headers['x-kept'], 'yes')
  })

  it('whatever throws while one reply is handled answers that request 502 and nothing else; the channel stays', async () => {
    // The headers are checked now, so a failure is simulated: the first writeHead of one request throws.
    type WriteHead = (this: ServerResponse, ...args: unknown[]) => ServerResponse
    const proto = ServerResponse.prototype as unknown as { writeHead: WriteHead }
    const original = proto.writeHead
    const thrown = new WeakSet<ServerResponse>()
    proto.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      if (this.req.url?.endsWith('/explode') === true && !thrown.has(this)) {
        thrown.add(this)
        throw new Error('simulated failure while writing a reply')
      }
      return original.apply(this, args)
    }
    try {
      const model = enq.context.connection.model
      nextReply = { headers: { 'x-status-code': '200' }, body: Buffer.from('fine') }
      held = new Promise((resolve) => { letGo = resolve })
      const calm = Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/calm-${i}`, { dispatcher: agent }))
      await waitFor(() => enq.context.pool.pendingReplies >= 20, { what: '20 requests waiting for their replies' })
      const exploded = await send(`${enq.url}/${hostile}/explode`)
      assertRelayqError(exploded, 502, 'RQ_ERR_MALFORMED_REPLY')
      assert.ok(exploded.headers['x-correlation-id'])
      letGo()
      const answers = await Promise.all(calm)
      assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
      assert.equal(enq.context.connection.model, model)
      assert.equal((await send(`${enq.url}/${hostile}/after`)).body.toString(), 'fine')
      assert.equal(enq.admission.inflight, 0)
    } finally {
      proto.writeHead = original
    }
  })

  it('x-relayq-error from replies becomes a metric label only when it is one of relayq\'s codes: 300 made-up codes add one series', async () => {
    const seriesOf = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('enqueuer_requests_failed_total{'))
    const before = seriesOf((await send(`${enq.url}/metrics`)).body.toString())
    // Each reply names its own made-up code, taken from the request's path.
    nextReply = (msg) => ({ headers: { 'x-status-code': '502', 'x-relayq-error': `RQ_ERR_MADE_UP_${String(msg.properties.headers?.['x-http-path']).slice(1)}` } })
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 30 }, (_, i) => send(`${enq.url}/${hostile}/c${batch}_${i}`, { dispatcher: agent })))
    }
    nextReply = { headers: { 'x-status-code': '504', 'x-relayq-error': 'RQ_ERR_DOWNSTREAM_TIMEOUT' } }
    await send(`${enq.url}/${hostile}/label`)
    const text = (await send(`${enq.url}/metrics`)).body.toString()
    const added = seriesOf(text).filter((l) => !before.some((b) => b.split(' ')[0] === l.split(' ')[0]))
    assert.doesNotMatch(text, /made_up/)
    assert.match(text, new RegExp(`^enqueuer_requests_failed_total\\{service="${hostile}",reason="unknown"\\} 300$`, 'm'))
    assert.match(text, new RegExp(`^enqueuer_requests_failed_total\\{service="${hostile}",reason="downstream_timeout"\\} 1$`, 'm'))
    assert.ok(added.length <= 2, added.join('\n'))
  })

  it('204 and 304 answers carry no body and no content-length, whatever the reply says; the next request on the connection is read right', async () => {
    for (const status of ['204', '304']) {
      nextReply = { headers: { 'x-status-code': status, 'content-length': '9' }, body: Buffer.from('BODY-LEAK') }
      const ex = await rawExchange(enq.port, `GET /${hostile}/a HTTP/1.1\r\nHost: x\r\n\r\nGET /${hostile}/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, { timeoutMs: 5000 })
      assert.equal(ex.responses.length, 2, ex.text)
      const [first, second] = ex.responses
      assert.equal(first!.status, Number(status))
      assert.equal(first!.headers['content-length'], undefined, ex.text)
      assert.equal(first!.headers['transfer-encoding'], undefined, ex.text)
      assert.equal(second!.status, Number(status), ex.text)
      // Not a hex string: the answers also carry random correlation ids.
      assert.doesNotMatch(ex.text, /BODY-LEAK/)
    }
  })
})
