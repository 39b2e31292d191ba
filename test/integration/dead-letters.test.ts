// The dequeuer's failure path: bounded retries through delay queues, the
// dead-letter queue with reasons, and the error reply a waiting client gets.
import assert from 'node:assert/strict'
import net, { type Server } from 'node:net'
import { after, afterEach, describe, it } from 'node:test'
import type { GetMessage } from 'amqplib'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoBody, startEcho } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

/** A "service" that accepts connections and resets them at once, counting each. */
async function resettingService (): Promise<{ url: string, count: () => number, close: () => Promise<void>, server: Server }> {
  let n = 0
  const server = net.createServer((s) => { n++; s.resetAndDestroy() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, count: () => n, close: () => new Promise((resolve) => server.close(() => resolve())), server }
}

const header = (m: GetMessage, name: string): unknown => (m.properties.headers as Record<string, unknown>)[name]

describe('dead letters', () => {
  let broker: TestBroker
  const cleanup: Array<() => Promise<void>> = []
  const services: string[] = []

  const setup = async (env: Record<string, string> = {}, downstream?: string): Promise<{ service: string, enq: TestEnqueuer, deq: TestDequeuer }> => {
    broker ??= await connectBroker()
    const service = uniqueService('dl')
    services.push(service)
    const deq = await startTestDequeuer(service, downstream ?? 'http://127.0.0.1:9', { DEQUEUER_MAX_ATTEMPTS: '3', DEQUEUER_RETRY_DELAY_MS: '200', CIRCUIT_BREAKER_ENABLED: 'false', ...env })
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '20', ENQUEUER_BREAKER_ENABLED: 'false' })
    cleanup.push(() => enq.close(), () => deq.close())
    return { service, enq, deq }
  }

  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()!()
  })

  after(async () => {
    for (const s of services) await broker.deleteService(s)
    await broker?.close()
  })

  it('a service down for good: exactly DEQUEUER_MAX_ATTEMPTS tries, then the DLQ with reasons, and the client hears at once', async () => {
    const down = await resettingService()
    cleanup.push(down.close)
    const { service, enq } = await setup({}, down.url)
    const started = Date.now()
    const res = await send(`${enq.url}/${service}/orders/1?x=1`, { method: 'POST', body: 'keep me' })
    assert.equal(res.status, 502)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    assert.equal(res.json<{ code: string }>().code, 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    assert.ok(Date.now() - started < 5000, `answered after ${Date.now() - started} ms, well before the 20 s timeout`)
    assert.equal(down.count(), 3)
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === 1 ? m : null })
    const m = dlq[0]!
    assert.equal(m.content.toString(), 'keep me')
    assert.equal(header(m, 'x-relayq-dead-letter-reason'), 'max_attempts')
    assert.equal(header(m, 'x-relayq-attempts'), '3')
    assert.equal(header(m, 'x-relayq-last-error-code'), 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    assert.match(String(header(m, 'x-relayq-last-error')), /cannot reach the service/)
    assert.equal(header(m, 'x-relayq-original-queue'), `${service}_requests`)
    assert.ok(Number(header(m, 'x-relayq-first-attempt-at')) >= started)
    assert.ok(Number(header(m, 'x-relayq-dead-lettered-at')) >= Number(header(m, 'x-relayq-first-attempt-at')))
    assert.equal(header(m, 'x-http-method'), 'POST')
    assert.equal(header(m, 'x-http-path'), '/orders/1?x=1')
    assert.equal(await broker.depth(`${service}_requests`), 0)
  })

  it('a service down for a while: served once it is back, nothing dead-lettered, no busy loop meanwhile', async () => {
    // Down: every connection is reset (and counted) until the real service takes the port.
    const down = await resettingService()
    const port = Number(new URL(down.url).port)
    const { service, enq, deq } = await setup({ DEQUEUER_MAX_ATTEMPTS: '5', DEQUEUER_RETRY_DELAY_MS: '400' }, down.url)
    const answers = Promise.all(Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/x`, { method: 'POST', body: `m${i}` })))
    await sleep(1500)
    // A busy loop would multiply connection attempts and deliveries; waiting out the delays
    // allows at most 4 attempts per message in 1.5 s (at 0, ~0.4 s and ~1.2 s, jitter shortening each by up to 20%).
    const connections = down.count()
    const metrics = (await send(`${deq.adminUrl}/metrics`)).body.toString()
    const deliveries = [...metrics.matchAll(/^dequeuer_outcomes_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
    assert.ok(connections >= 20 && connections <= 80, `${connections} connection attempts to the down service in 1.5 s`)
    assert.ok(deliveries <= 80, `${deliveries} deliveries settled in 1.5 s`)
    await down.close()
    const back = await startEchoOn(port)
    cleanup.push(back)
    const got = await answers
    got.forEach((r, i) => {
      assert.equal(r.status, 200)
      assert.equal(r.body.toString(), `m${i}`)
    })
    assert.equal(await broker.depth(`${service}_requests.dlq`), 0)
  })

  it('retries statuses listed in DEQUEUER_RETRY_STATUSES, and only those', async () => {
    const echo = await startEcho((_req, res) => { res.writeHead(503, { 'retry-after': '1' }); res.end('warming up') })
    cleanup.push(echo.close)
    const plain = await setup({}, echo.url)
    const once = await send(`${plain.enq.url}/${plain.service}/x`)
    assert.equal(once.status, 503)
    assert.equal(once.body.toString(), 'warming up')
    assert.equal(echo.received.length, 1)
    const retrying = await setup({ DEQUEUER_RETRY_STATUSES: '503' }, echo.url)
    const res = await send(`${retrying.enq.url}/${retrying.service}/x`)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_STATUS')
    assert.equal(echo.received.length, 1 + 3)
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${retrying.service}_requests.dlq`); return m.length === 1 ? m : null })
    assert.equal(header(dlq[0]!, 'x-relayq-last-error-code'), 'RQ_ERR_DOWNSTREAM_STATUS')
  })

  it('malformed and too-large messages go to the DLQ at once, and the consumer keeps serving', async () => {
    const echo = await startEcho(echoBody)
    cleanup.push(echo.close)
    const { service, enq } = await setup({ DEQUEUER_MAX_MESSAGE_BYTES: '1000' }, echo.url)
    const q = `${service}_requests`
    await broker.publish(q, Buffer.from('x'), { headers: { 'x-http-method': 'BREW' } })
    await broker.publish(q, Buffer.from('x'), { headers: { 'x-http-path': '/../../etc/passwd' } })
    await broker.publish(q, Buffer.from('x'), { headers: { 'x-bad': { nested: 1 } } })
    await broker.publish(q, Buffer.alloc(1001), { headers: { 'x-http-method': 'POST' } })
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${q}.dlq`); return m.length === 4 ? m : null })
    assert.deepEqual(dlq.map((m) => header(m, 'x-relayq-dead-letter-reason')).sort(), ['malformed', 'malformed', 'malformed', 'too_large'])
    assert.equal(echo.received.length, 0)
    const res = await send(`${enq.url}/${service}/still-here`, { method: 'POST', body: 'ok' })
    assert.equal(res.status, 200)
  })

  it('an expired message is never forwarded: dead-lettered as expired, or dropped and counted', async () => {
    const echo = await startEcho(echoBody)
    cleanup.push(echo.close)
    const dl = await setup({}, echo.url)
    await broker.publish(`${dl.service}_requests`, Buffer.from('late'), { headers: { 'x-relayq-deadline': Date.now() - 1000 } })
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${dl.service}_requests.dlq`); return m.length === 1 ? m : null })
    assert.equal(header(dlq[0]!, 'x-relayq-dead-letter-reason'), 'expired')
    const drop = await setup({ DEQUEUER_EXPIRED: 'drop' }, echo.url)
    await broker.publish(`${drop.service}_requests`, Buffer.from('late'), { headers: { 'x-relayq-deadline': Date.now() - 1000 } })
    await waitFor(async () => /dequeuer_dropped_total\{service="[^"]+",reason="expired"\} 1/.test((await send(`${drop.deq.adminUrl}/metrics`)).body.toString()), { what: 'the drop to be counted' })
    assert.equal(await broker.depth(`${drop.service}_requests.dlq`), 0)
    assert.equal(echo.received.length, 0)
  })

  it('a response over DEQUEUER_MAX_REPLY_BYTES: 502 with its own code, one call, acked, no loop', async () => {
    const echo = await startEcho((_req, res) => { res.writeHead(200); res.end(Buffer.alloc(5000)) })
    cleanup.push(echo.close)
    const { service, enq } = await setup({ DEQUEUER_MAX_REPLY_BYTES: '4096' }, echo.url)
    const res = await send(`${enq.url}/${service}/big`)
    assert.equal(res.status, 502)
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_RESPONSE_TOO_LARGE')
    await sleep(500)
    assert.equal(echo.received.length, 1)
    assert.equal(await broker.depth(`${service}_requests`), 0)
    assert.equal(await broker.depth(`${service}_requests.dlq`), 0)
  })

  it('refuses to start against a queue declared with other arguments, explaining how to fix it', async () => {
    broker ??= await connectBroker()
    const service = uniqueService('mismatch')
    services.push(service)
    const ch = await broker.channel()
    await ch.assertQueue(`${service}_requests`, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
    await ch.close()
    const deq = await startTestDequeuer(service, 'http://127.0.0.1:9')
    cleanup.push(() => deq.close())
    await assert.rejects(deq.consuming, (err: Error) => {
      // The broker names the first argument that differs: here the queue has no dead-letter exchange.
      assert.match(err.message, new RegExp(`queue '${service}_requests' exists with x-dead-letter-exchange = not set, but relayq declares it with x-dead-letter-exchange = 'relayq.dlx'`))
      assert.match(err.message, /DEQUEUER_QUEUE_TYPE/)
      assert.match(err.message, /rabbitmqctl set_policy/)
      return true
    })
  })

  it('works on quorum queues, with a delivery limit and a dead-letter target', async () => {
    const down = await resettingService()
    cleanup.push(down.close)
    const { service, enq } = await setup({ DEQUEUER_QUEUE_TYPE: 'quorum' }, down.url)
    const res = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'q' })
    assert.equal(res.status, 502)
    assert.equal(down.count(), 3)
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === 1 ? m : null })
    assert.equal(header(dlq[0]!, 'x-relayq-dead-letter-reason'), 'max_attempts')
  })
})

async function startEchoOn (port: number): Promise<() => Promise<void>> {
  const http = await import('node:http')
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => { res.writeHead(200); res.end(Buffer.concat(chunks)) })
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
}
