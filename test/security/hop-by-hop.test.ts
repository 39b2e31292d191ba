// S4: hop-by-hop headers, headers a Connection header names, and Host stop at
// relayq in both directions; protocol upgrades get a JSON 501 at once.
// (Forged control and broker headers: test/integration/roundtrip.test.ts,
// "never lets a client forge control or broker headers".)
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { echoJson } from '../helpers/echo'
import { send, sendNode } from '../helpers/http'
import { rawExchange } from '../helpers/raw-http'
import { assertRelayqError } from '../helpers/relayq-error'
import { sleep } from '../helpers/wait'
import { withRelayPair } from '../helpers/relay-pair'

const REQUEST_HOP = ['connection', 'x-secret-hop', 'x-other-hop', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'http2-settings', 'transfer-encoding']

describe('S4: hop-by-hop headers and Host', () => {
  const pair = withRelayPair({ prefix: 'hop', enqueuerEnv: { ASYNC_JOBS: 'false' } })
  const { service } = pair

  it('request: Connection-named headers, every hop-by-hop header and Host stop at the enqueuer; the service sees DOWNSTREAM_URL\'s host', async () => {
    pair.echo.behave(echoJson)
    const n = pair.echo.received.length
    const res = await sendNode(`${pair.enq.url}/${service}/h`, {
      headers: {
        connection: 'close, X-Secret-Hop',
        'x-secret-hop': '1',
        'keep-alive': 'timeout=99',
        te: 'trailers',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic c2VjcmV0',
        'proxy-connection': 'keep-alive',
        'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA',
        host: 'evil.example',
        'x-kept': 'yes',
      },
    })
    assert.equal(res.status, 200)
    const seen = pair.echo.received[n]!
    for (const h of REQUEST_HOP) {
      if (h === 'connection') continue
      assert.equal(seen.headers[h], undefined, `${h} reached the service`)
    }
    // Node's client adds its own Connection: keep-alive; no value of the client's may show.
    assert.doesNotMatch(String(seen.headers.connection ?? ''), /secret|close/i)
    assert.equal(seen.headers.host, `127.0.0.1:${pair.echo.port}`)
    assert.equal(seen.headers['x-kept'], 'yes')
  })

  it('request: two Connection header lines both count, and Trailer is dropped (raw socket)', async () => {
    pair.echo.behave(echoJson)
    const n = pair.echo.received.length
    const ex = await rawExchange(pair.enq.port, `GET /${service}/h HTTP/1.1\r\nHost: evil\r\nConnection: X-Secret-Hop\r\nX-Secret-Hop: 1\r\nConnection: x-other-hop, close\r\nX-Other-Hop: 2\r\nTrailer: x-checksum\r\nX-Kept: yes\r\n\r\n`, { timeoutMs: 5000, firstResponse: true })
    assert.equal(ex.responses[0]?.status, 200, ex.text)
    const seen = pair.echo.received[n]!
    assert.equal(seen.headers['x-secret-hop'], undefined)
    assert.equal(seen.headers['x-other-hop'], undefined)
    assert.equal(seen.headers.trailer, undefined)
    assert.equal(seen.headers['x-kept'], 'yes')
    assert.equal(seen.headers.host, `127.0.0.1:${pair.echo.port}`)
  })

  it('response: the service\'s hop-by-hop headers, and those its Connection header names, never reach the client', async () => {
    pair.echo.behave((_req, res) => {
      // Two Connection lines: both name headers to drop.
      res.setHeader('connection', ['X-Resp-Hop, keep-alive', 'X-Resp-Hop2'])
      res.setHeader('x-resp-hop', 'secret')
      res.setHeader('x-resp-hop2', 'secret')
      res.setHeader('keep-alive', 'timeout=99, max=7')
      res.setHeader('proxy-authenticate', 'Basic realm="inside"')
      res.setHeader('proxy-connection', 'keep-alive')
      res.setHeader('trailer', 'x-checksum')
      res.setHeader('upgrade', 'h2c')
      res.setHeader('x-kept', 'yes')
      // No Content-Length: the service answers chunked, a framing that is the service hop's alone.
      res.writeHead(200)
      res.end('ok')
    })
    // Straight from the service, the headers are there: what follows tests relayq, not the service.
    const direct = await sendNode(`${pair.echo.url}/base/direct`)
    assert.equal(direct.headers['x-resp-hop'], 'secret')
    assert.equal(direct.headers['x-resp-hop2'], 'secret')
    assert.equal(direct.headers['transfer-encoding'], 'chunked')
    const res = await sendNode(`${pair.enq.url}/${service}/r`)
    assert.equal(res.status, 200)
    assert.equal(res.body.toString(), 'ok')
    assert.equal(res.headers['x-kept'], 'yes')
    for (const h of ['x-resp-hop', 'x-resp-hop2', 'proxy-authenticate', 'proxy-connection', 'trailer', 'upgrade', 'transfer-encoding']) {
      assert.equal(res.headers[h], undefined, `${h} reached the client`)
    }
    // The enqueuer's own keep-alive headers, not the service's.
    assert.doesNotMatch(String(res.headers['keep-alive'] ?? ''), /99|max=7/)
    assert.doesNotMatch(String(res.headers.connection ?? ''), /x-resp-hop/i)
  })

  for (const [name, upgrade] of [['websocket', 'Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13'], ['h2c', 'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']] as const) {
    it(`Upgrade: ${name} gets a JSON 501 at once and a closed socket, and nothing reaches the service`, async () => {
      const n = pair.echo.received.length
      const ex = await rawExchange(pair.enq.port, `GET /${service}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade${name === 'h2c' ? ', HTTP2-Settings' : ''}\r\n${upgrade}\r\n\r\n`, { timeoutMs: 3000 })
      assert.equal(ex.closed, true, 'the socket was left open')
      assert.ok(ex.ms < 1000, `closed after ${ex.ms} ms`)
      assert.equal(ex.responses.length, 1, ex.text)
      assertRelayqError(ex.responses[0]!, 501, 'RQ_ERR_UPGRADE_NOT_SUPPORTED')
      await sleep(200)
      assert.equal(pair.echo.received.length, n)
      assert.equal(await pair.broker.depth(`${service}_requests`), 0)
    })
  }

  it('after all of it the enqueuer still serves', async () => {
    pair.echo.behave(echoJson)
    assert.equal((await send(`${pair.enq.url}/${service}/still`)).status, 200)
  })
})
