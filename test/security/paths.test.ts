// S8 and S9: the path a service sees never leaves DOWNSTREAM_URL's base path,
// whatever the client sends (raw sockets: no client normalises anything on
// the way), nor for a message published by someone else; and a redirect
// from the service goes back to the client, never followed.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { BrokerTraffic } from '../helpers/broker-traffic'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { freePort } from '../helpers/process'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

/** [request target with S for the service, the code relayq refuses it with]. */
const REFUSED: Array<[string, string]> = [
  ['/S/../admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/a/../../admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/%2e%2e/admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/%2E%2E/admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/.%2e/admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/%2e%2e%2fadmin', 'RQ_ERR_INVALID_PATH'],
  ['/S/a%2F..%2F..%2Fadmin', 'RQ_ERR_INVALID_PATH'],
  ['/S/..%5cadmin', 'RQ_ERR_INVALID_PATH'],
  ['/S/..;/admin', 'RQ_ERR_INVALID_PATH'],
  ['/S/a\\..\\admin', 'RQ_ERR_INVALID_PATH'],
  ['/S//evil.example/x', 'RQ_ERR_INVALID_PATH'],
  ['/S/x#fragment', 'RQ_ERR_INVALID_PATH'],
  ['//S', 'RQ_ERR_INVALID_SERVICE'],
  ['//S/x', 'RQ_ERR_INVALID_SERVICE'],
  ['http://evil.example/S/x', 'RQ_ERR_INVALID_PATH'],
  ['https://evil.example:8443/S/x', 'RQ_ERR_INVALID_PATH'],
  ['S/x', 'RQ_ERR_BAD_REQUEST'],
]

/** [request target, the raw path the service records]. */
const FORWARDED: Array<[string, string]> = [
  ['/S/a%2Fb', '/base/a%2Fb'],
  ['/S/a%2F%2Fb', '/base/a%2F%2Fb'],
  ['/S/%2e%2e.txt', '/base/%2e%2e.txt'],
  ['/S/.../x', '/base/.../x'],
  ['/S/a/b?next=../../admin', '/base/a/b?next=../../admin'],
  ['/S', '/base/'],
  ['/S?x=1', '/base/?x=1'],
]

/** The path as a service that percent-decodes and then normalises would route it. */
function decodedAndNormalised (raw: string): string {
  const path = raw.split('?')[0]!
  return new URL(decodeURIComponent(path).replace(/\\/g, '/'), 'http://service').pathname
}

describe('S8: paths stay under DOWNSTREAM_URL\'s base path', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let traffic: BrokerTraffic
  const service = uniqueService('paths')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, `${echo.url}/base`)
    await deq.consuming
    enq = await startTestEnqueuer({ ASYNC_JOBS: 'false' })
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

  for (const [target, code] of REFUSED) {
    it(`${target}: refused, ${code}, nothing forwarded`, async () => {
      traffic.reset()
      const n = echo.received.length
      const ex = await rawExchange(enq.port, `GET ${target.replace('S', service)} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true, timeoutMs: 3000 })
      assert.equal(ex.responses.length, 1, ex.text)
      assertRelayqError(ex.responses[0]!, 400, code)
      await sleep(50)
      assert.deepEqual(traffic.publishes, [])
      assert.equal(echo.received.length, n)
    })
  }

  for (const [target, seen] of FORWARDED) {
    it(`${target}: forwarded as ${seen}, which stays under /base/ even percent-decoded`, async () => {
      const n = echo.received.length
      const ex = await rawExchange(enq.port, `GET ${target.replace('S', service)} HTTP/1.1\r\nHost: x\r\n\r\n`, { firstResponse: true, timeoutMs: 5000 })
      assert.equal(ex.responses[0]?.status, 200, ex.text)
      const got = echo.received[n]!
      assert.equal(got.url, seen)
      assert.ok(got.url.startsWith('/base/'))
      assert.ok(decodedAndNormalised(got.url).startsWith('/base/'), decodedAndNormalised(got.url))
      assert.equal(got.headers.host, `127.0.0.1:${echo.port}`)
    })
  }

  it('a message published by someone else with an escaping x-http-path is dead-lettered as malformed, never forwarded', async () => {
    const n = echo.received.length
    const escapes = ['/%2e%2e%2fadmin', '/a%2F..%2Fadmin', '/..;/admin', '//evil.example/x', 'http://evil.example/x', '/..\\admin', 'admin']
    for (const path of escapes) await broker.publish(`${service}_requests`, Buffer.from(path), { headers: { 'x-http-path': path } })
    const dead = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === escapes.length ? m : null }, { what: 'every message in the DLQ' })
    assert.deepEqual(dead.map((m) => (m.properties.headers as Record<string, unknown>)['x-relayq-dead-letter-reason']), escapes.map(() => 'malformed'))
    assert.deepEqual(dead.map((m) => m.content.toString()).sort(), [...escapes].sort())
    assert.equal(echo.received.length, n)
  })
})

describe('S9: redirects are passed back, never followed', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let elsewhere: net.Server
  let elsewherePort: number
  let connections = 0
  const service = uniqueService('ssrf')

  before(async () => {
    broker = await connectBroker()
    // A listener on another loopback address stands for an internal host the service points at.
    elsewherePort = await freePort()
    elsewhere = net.createServer((s) => { connections++; s.destroy() })
    await new Promise<void>((resolve) => elsewhere.listen(elsewherePort, '127.0.0.2', resolve))
    echo = await startEcho()
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    enq = await startTestEnqueuer({ ASYNC_JOBS: 'false' })
  })

  after(async () => {
    await enq.close()
    await deq.close()
    await echo.close()
    await new Promise<void>((resolve) => elsewhere.close(() => resolve()))
    await broker.deleteService(service)
    await broker.close()
  })

  for (const status of [301, 302, 303, 307, 308]) {
    it(`${status} Location: http://127.0.0.2:<port>/: the client gets the ${status}, nothing connects to 127.0.0.2`, async () => {
      const location = `http://127.0.0.2:${elsewherePort}/internal/admin`
      echo.behave((_req, res) => { res.writeHead(status, { location, 'content-type': 'text/plain' }); res.end('moved') })
      const n = echo.received.length
      const ex = await rawExchange(enq.port, `POST /${service}/go HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody`, { firstResponse: true, timeoutMs: 5000 })
      assert.equal(ex.responses[0]?.status, status, ex.text)
      assert.equal(ex.responses[0].headers.location, location)
      assert.equal(ex.responses[0].body, 'moved')
      await sleep(300)
      assert.equal(connections, 0, 'someone followed the redirect')
      assert.equal(echo.received.length, n + 1)
    })
  }

  it('the listener on 127.0.0.2 does count connections', async () => {
    await new Promise<void>((resolve) => { const s = net.connect(elsewherePort, '127.0.0.2', () => { s.destroy(); resolve() }) })
    await waitFor(() => connections === 1, { what: 'the probe connection to be counted' })
  })
})
