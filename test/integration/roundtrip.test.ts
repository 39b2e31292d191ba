// Round trips through a real enqueuer, RabbitMQ and dequeuer to a real HTTP service.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { Agent } from 'undici'
import { echoBody, echoJson } from '../helpers/echo'
import { send, sendNode } from '../helpers/http'
import { withRelayPair } from '../helpers/relay-pair'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

describe('round trip', () => {
  const pair = withRelayPair({ prefix: 'rt' })
  const { service } = pair

  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    it(`carries ${method} with its path and query`, async () => {
      pair.echo.behave(echoJson)
      const res = await send(`${pair.enq.url}/${service}/a/b%20c?x=1&y=%C3%A9`, method === 'GET' ? { method } : { method, body: 'payload' })
      assert.equal(res.status, 200)
      const seen = res.json<{ method: string, url: string }>()
      assert.equal(seen.method, method)
      assert.equal(seen.url, '/base/a/b%20c?x=1&y=%C3%A9')
      assert.match(String(res.headers['x-correlation-id']), /^[0-9a-f-]{36}$/)
    })
  }

  it('sends / when the request has no rest path', async () => {
    pair.echo.behave(echoJson)
    const res = await send(`${pair.enq.url}/${service}`)
    assert.equal(res.json<{ url: string }>().url, '/base/')
    const q = await send(`${pair.enq.url}/${service}?only=query`)
    assert.equal(q.json<{ url: string }>().url, '/base/?only=query')
  })

  it('keeps unicode (latin1 bytes) and repeated headers, and drops hop-by-hop ones', async () => {
    pair.echo.behave(echoJson)
    const n = pair.echo.received.length
    const res = await sendNode(`${pair.enq.url}/${service}/h`, {
      headers: {
        'x-multi': ['one', 'two'],
        'x-unicode': Buffer.from('héllo wörld', 'utf8').toString('latin1'),
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic eA==',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        tracestate: 'congo=t61rcWkgMzE',
        baggage: 'userId=alice',
      },
    })
    assert.equal(res.status, 200)
    const got = pair.echo.received[n]!
    // Repeated headers travel combined into one string (ProxyMQ peers cannot read AMQP lists), as HTTP allows.
    assert.deepEqual(got.rawHeaders.filter((_, i, a) => i % 2 === 0 && a[i]!.toLowerCase() === 'x-multi').length, 1)
    assert.equal(got.headers['x-multi'], 'one, two')
    assert.equal(Buffer.from(got.headers['x-unicode'] as string, 'latin1').toString('utf8'), 'héllo wörld')
    assert.equal(got.headers['keep-alive'], undefined)
    assert.equal(got.headers.te, undefined)
    assert.equal(got.headers['proxy-authorization'], undefined)
    assert.equal(got.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
    assert.equal(got.headers.tracestate, 'congo=t61rcWkgMzE')
    assert.equal(got.headers.baggage, 'userId=alice')
  })

  for (const size of [0, 1, 1024 * 1024, 8 * 1024 * 1024]) {
    it(`carries a ${size}-byte random body both ways, byte for byte`, async () => {
      pair.echo.behave(echoBody)
      const body = randomBytes(size)
      const res = await send(`${pair.enq.url}/${service}/bin`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
      assert.equal(res.status, 200)
      assert.equal(res.body.length, size)
      assert.equal(sha(res.body), sha(body))
      assert.equal(res.headers['x-echo-sha256'], sha(body))
    })
  }

  for (const status of [200, 201, 204, 301, 404, 500, 503]) {
    it(`passes status ${status} and the service's headers through`, async () => {
      pair.echo.behave((_req, res) => {
        const body = status === 204 ? '' : `status ${status}`
        const headers: Record<string, string | string[]> = { 'x-service': 'yes', 'set-cookie': ['a=1', 'b=2'] }
        if (status === 301) headers.location = 'http://127.0.0.2:9/elsewhere'
        res.writeHead(status, headers)
        res.end(body)
      })
      const res = await send(`${pair.enq.url}/${service}/s`)
      assert.equal(res.status, status)
      assert.equal(res.headers['x-service'], 'yes')
      assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2'])
      assert.equal(res.headers['x-relayq-error'], undefined)
      if (status === 301) assert.equal(res.headers.location, 'http://127.0.0.2:9/elsewhere')
      if (status !== 204) assert.equal(res.body.toString(), `status ${status}`)
    })
  }

  it('answers HEAD with the service\'s headers and no body', async () => {
    pair.echo.behave((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11', 'x-head': '1' })
      res.end()
    })
    const res = await send(`${pair.enq.url}/${service}/head`, { method: 'HEAD' })
    assert.equal(res.status, 200)
    assert.equal(res.headers['x-head'], '1')
    assert.equal(res.headers['content-length'], '11')
    assert.equal(res.body.length, 0)
    assert.equal(pair.echo.received.at(-1)!.method, 'HEAD')
  })

  it('answers 1,000 concurrent requests, each with its own body', async () => {
    pair.echo.behave(echoBody)
    const agent = new Agent({ connections: 100 })
    try {
      const bodies = Array.from({ length: 1000 }, (_, i) => Buffer.from(`request-${i}-${randomBytes(16).toString('hex')}`))
      const answers = await Promise.all(bodies.map((body) => send(`${pair.enq.url}/${service}/c`, { method: 'POST', body, dispatcher: agent })))
      answers.forEach((res, i) => {
        assert.equal(res.status, 200)
        assert.equal(res.body.toString(), bodies[i]!.toString())
      })
    } finally {
      await agent.close()
    }
    assert.equal(pair.enq.context.pool.pendingReplies, 0)
    assert.equal(pair.enq.admission.inflight, 0)
  })

  it('forwards a ProxyMQ-format message and replies in ProxyMQ\'s format', async () => {
    pair.echo.behave((_req, res) => {
      res.writeHead(201, { 'content-type': 'text/plain' })
      res.end('made')
    })
    const ch = await pair.broker.channel()
    try {
      const replyQueue = (await ch.assertQueue('', { exclusive: true, autoDelete: true })).queue
      const got = new Promise<import('amqplib').ConsumeMessage>((resolve) => {
        void ch.consume(replyQueue, (m) => { if (m !== null) resolve(m) }, { noAck: true })
      })
      const n = pair.echo.received.length
      // What ProxyMQ's enqueuer publishes: every client header, the method, no path.
      ch.sendToQueue(`${service}_requests`, Buffer.from('proxymq body'), {
        correlationId: 'proxymq-1',
        replyTo: replyQueue,
        headers: { 'x-http-method': 'PUT', host: 'proxymq:8000', 'content-length': '12', 'x-client': 'py' },
      })
      const reply = await got
      assert.equal(reply.properties.correlationId, 'proxymq-1')
      assert.equal(reply.properties.headers?.['x-status-code'], '201')
      assert.equal(reply.content.toString(), 'made')
      const seen = pair.echo.received[n]!
      assert.equal(seen.method, 'PUT')
      assert.equal(seen.url, '/base')
      assert.equal(seen.body.toString(), 'proxymq body')
      assert.equal(seen.headers['x-client'], 'py')
      assert.notEqual(seen.headers.host, 'proxymq:8000')
    } finally {
      await ch.close()
    }
  })

  it('never lets a client forge control or broker headers', async () => {
    pair.echo.behave(echoJson)
    const n = pair.echo.received.length
    const res = await send(`${pair.enq.url}/${service}/real`, {
      method: 'POST',
      body: 'x',
      headers: {
        'x-http-method': 'DELETE',
        'X-HTTP-Path': '/admin',
        'x-status-code': '200',
        'x-relayq-attempts': '99',
        'x-death': 'forged',
        'x-delivery-count': '999',
        'x-first-death-reason': 'expired',
        'x-acquired-count': '5',
      },
    })
    assert.equal(res.status, 200)
    const seen = pair.echo.received[n]!
    assert.equal(seen.method, 'POST')
    assert.equal(seen.url, '/base/real')
    for (const h of ['x-http-method', 'x-http-path', 'x-status-code', 'x-relayq-attempts', 'x-death', 'x-delivery-count', 'x-first-death-reason', 'x-acquired-count']) {
      assert.equal(seen.headers[h], undefined, h)
    }
  })

  it('does not follow redirects: the 3xx goes back as it is', async () => {
    pair.echo.behave((req, res) => {
      if (req.url.includes('target')) {
        res.writeHead(200)
        res.end('followed')
        return
      }
      res.writeHead(302, { location: `${pair.echo.url}/base/target` })
      res.end()
    })
    const n = pair.echo.received.length
    const res = await send(`${pair.enq.url}/${service}/redirect`)
    assert.equal(res.status, 302)
    assert.equal(pair.echo.received.length, n + 1)
  })
})
