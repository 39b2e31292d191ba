// Every answer the enqueuer makes itself: its status, its JSON body with a
// stable code, its x-relayq-error header, and that nothing was published.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send, sendNode, type Answer } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { TcpProxy } from '../helpers/tcp-proxy'
import { waitFor } from '../helpers/wait'

function assertRelayqError (res: Answer, status: number, code: string): void {
  assert.equal(res.status, status, res.body.toString())
  assert.equal(res.headers['x-relayq-error'], code)
  assert.match(String(res.headers['content-type']), /application\/json/)
  const body = res.json<{ error: string, detail: string, code: string }>()
  assert.equal(body.code, code)
  assert.equal(typeof body.error, 'string')
  assert.equal(typeof body.detail, 'string')
}

describe('enqueuer-made answers', () => {
  let broker: TestBroker
  let echo: Echo
  let enq: TestEnqueuer
  let deq: TestDequeuer
  const service = uniqueService('err')
  const idle = uniqueService('idle')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
    deq = await startTestDequeuer(service, echo.url, { DOWNSTREAM_TIMEOUT: '10' })
    await deq.consuming
    const ch = await broker.channel()
    await ch.assertQueue(`${idle}_requests`, { durable: false, autoDelete: false })
    await ch.close()
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '1', ENQUEUER_MAX_BODY_BYTES: '1000', ENQUEUER_BREAKER_ENABLED: 'false' })
  })

  after(async () => {
    await enq.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.deleteService(idle)
    await broker.close()
  })

  for (const bad of ['amq.rabbitmq.reply-to', '.hidden', 'a'.repeat(101), 'bad%2Fname', 'sp%20ace', '-dash']) {
    it(`400 for the service name "${bad.slice(0, 30)}"`, async () => {
      assertRelayqError(await send(`${enq.url}/${bad}/x`), 400, 'RQ_ERR_INVALID_SERVICE')
    })
  }

  it('400 for a path with dot segments', async () => {
    assertRelayqError(await sendNode(`${enq.url}/${service}/a/../../admin`), 400, 'RQ_ERR_INVALID_PATH')
  })

  it('404 when the service has no queue, before publishing anything', async () => {
    const ghost = uniqueService('ghost')
    assertRelayqError(await send(`${enq.url}/${ghost}/x`), 404, 'RQ_ERR_QUEUE_NOT_FOUND')
    assert.equal(await broker.exists(`${ghost}_requests`), false)
  })

  it('503 when the queue has no consumer, and nothing is published', async () => {
    const res = await send(`${enq.url}/${idle}/x`, { method: 'POST', body: 'x' })
    assertRelayqError(res, 503, 'RQ_ERR_NO_CONSUMERS')
    assert.equal(res.headers['retry-after'], '1')
    assert.equal(await broker.depth(`${idle}_requests`), 0)
  })

  it('504 when the reply does not come in time, answered within the timeout + 1 s', async () => {
    echo.behave((_req, res) => { setTimeout(() => { res.writeHead(200); res.end('late') }, 3000) })
    const res = await send(`${enq.url}/${service}/slow`)
    assertRelayqError(res, 504, 'RQ_ERR_REPLY_TIMEOUT')
    assert.ok(res.ms >= 950 && res.ms < 2000, `answered in ${res.ms} ms`)
    assert.match(String(res.headers['x-correlation-id']), /^[0-9a-f-]{36}$/)
  })

  it('a shorter deadline per request with x-relayq-timeout-ms', async () => {
    echo.behave((_req, res) => { setTimeout(() => { res.writeHead(200); res.end('late') }, 2000) })
    const res = await send(`${enq.url}/${service}/slow`, { headers: { 'x-relayq-timeout-ms': '300' } })
    assertRelayqError(res, 504, 'RQ_ERR_REPLY_TIMEOUT')
    assert.ok(res.ms < 900, `answered in ${res.ms} ms`)
  })

  for (const bad of ['0', '-5', 'soon', '1.5', '5000']) {
    it(`400 for x-relayq-timeout-ms: ${bad}`, async () => {
      assertRelayqError(await send(`${enq.url}/${service}/x`, { headers: { 'x-relayq-timeout-ms': bad } }), 400, 'RQ_ERR_INVALID_TIMEOUT')
    })
  }

  it('413 for a declared body over the limit, without reading it', async () => {
    const res = await send(`${enq.url}/${service}/big`, { method: 'POST', body: Buffer.alloc(1001) })
    assertRelayqError(res, 413, 'RQ_ERR_BODY_TOO_LARGE')
  })

  it('413 for a chunked body that grows over the limit', async () => {
    const res = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      const socket = net.connect(enq.port, '127.0.0.1', () => {
        socket.write(`POST /${service}/big HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`)
        for (let i = 0; i < 3; i++) socket.write('200\r\n' + 'x'.repeat(512) + '\r\n')
      })
      let data = ''
      socket.on('data', (c) => { data += c.toString() })
      socket.on('close', () => resolve({ status: Number(data.split(' ')[1]), body: data }))
      socket.on('error', reject)
    })
    assert.equal(res.status, 413)
    assert.match(res.body, /RQ_ERR_BODY_TOO_LARGE/)
  })

  it('405 for methods relayq does not carry', async () => {
    assertRelayqError(await sendNode(`${enq.url}/${service}/x`, { method: 'TRACE' }), 405, 'RQ_ERR_METHOD_NOT_ALLOWED')
  })

  it('400 JSON for requests Node\'s parser refuses (both Content-Length and Transfer-Encoding)', async () => {
    const raw = await new Promise<string>((resolve) => {
      const socket = net.connect(enq.port, '127.0.0.1', () => {
        socket.write(`POST /${service}/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)
      })
      let data = ''
      socket.on('data', (c) => { data += c.toString() })
      socket.on('close', () => resolve(data))
    })
    assert.match(raw, /^HTTP\/1\.1 400/)
    assert.match(raw, /RQ_ERR_BAD_REQUEST/)
  })
})

describe('a caller deadline shorter than the broker\'s confirm', () => {
  it('504 RQ_ERR_REPLY_TIMEOUT (the request may have run), not 503 RQ_ERR_PUBLISH_TIMEOUT', async () => {
    // Every byte between the enqueuer and the broker waits 300 ms: no confirm can come within a 100 ms deadline.
    const proxy = new TcpProxy('127.0.0.1', 5672)
    await proxy.start()
    const service = uniqueService('slowconfirm')
    const broker = await connectBroker()
    const deq = await startTestDequeuer(service, 'http://127.0.0.1:9')
    const enq = await startTestEnqueuer({ RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}`, ENQUEUER_PUBLISH_TIMEOUT_MS: '5000', ENQUEUER_BREAKER_ENABLED: 'false' })
    try {
      await deq.consuming
      proxy.setLatency(300)
      const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'a', headers: { 'x-relayq-timeout-ms': '100' } })
      assert.equal(res.status, 504, res.body.toString())
      assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_REPLY_TIMEOUT')
    } finally {
      await enq.close()
      await deq.close()
      await broker.deleteService(service)
      await broker.close()
      await proxy.stop()
    }
  })
})

describe('enqueuer without a broker', () => {
  it('answers 503 in under a second when the broker is unreachable', async () => {
    const proxy = new TcpProxy('127.0.0.1', 5672)
    await proxy.start()
    proxy.setMode('refuse')
    const enq = await startTestEnqueuer({ RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}` }, { waitConnected: false })
    try {
      const res = await send(`${enq.url}/anything/x`)
      assertRelayqError(res, 503, 'RQ_ERR_BROKER_UNAVAILABLE')
      assert.ok(res.ms < 1000, `answered in ${res.ms} ms`)
      const ready = await send(`${enq.url}/readyz`)
      assert.equal(ready.status, 503)
    } finally {
      await enq.close()
      await proxy.stop()
    }
  })

  it('answers 503 at once after losing the broker, and serves again once it is back', async () => {
    const broker = await connectBroker()
    const echo = await startEcho()
    const service = uniqueService('lost')
    const deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    const proxy = new TcpProxy('127.0.0.1', 5672)
    await proxy.start()
    const enq = await startTestEnqueuer({ RABBITMQ_URL: `amqp://guest:guest@127.0.0.1:${proxy.port}`, RABBITMQ_RECONNECT_MAX_MS: '200' })
    try {
      assert.equal((await send(`${enq.url}/${service}/x`)).status, 200)
      proxy.setMode('refuse')
      proxy.cut()
      await waitFor(() => !enq.context.connection.up, { what: 'the enqueuer to notice' })
      const res = await send(`${enq.url}/${service}/x`)
      assertRelayqError(res, 503, 'RQ_ERR_BROKER_UNAVAILABLE')
      assert.ok(res.ms < 100, `answered in ${res.ms} ms`)
      proxy.setMode('pass')
      await waitFor(async () => (await send(`${enq.url}/${service}/x`)).status === 200, { timeoutMs: 5000, what: 'serving again' })
    } finally {
      await enq.close()
      await proxy.stop()
      await deq.close()
      await echo.close()
      await broker.deleteService(service)
      await broker.close()
    }
  })
})
