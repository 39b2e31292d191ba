import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { responseHeaderTable, scanRequestHeaders } from '../../src/http/headers'
import { isSafeRelativePath, joinDownstreamPath, parseTarget } from '../../src/http/target'

describe('request target', () => {
  it('splits service and rest', () => {
    assert.deepEqual(parseTarget('/orders'), { service: 'orders', path: '/' })
    assert.deepEqual(parseTarget('/orders?x=1'), { service: 'orders', path: '/?x=1' })
    assert.deepEqual(parseTarget('/orders/a/b?x=1'), { service: 'orders', path: '/a/b?x=1' })
    assert.deepEqual(parseTarget('/my.svc-2_x/'), { service: 'my.svc-2_x', path: '/' })
  })
  for (const bad of ['/', '//orders', '/amq.gen', '/.x', '/a%2Fb', 'http://evil/orders', '*', '/' + 'a'.repeat(101)]) {
    it(`refuses ${bad.slice(0, 40)}`, () => assert.equal(typeof parseTarget(bad), 'string'))
  }
  for (const bad of ['/a/../b', '/..', '/a/./b', '/%2E%2e/x', '/a\\b', '/a b', '/a#f', '//host/x', '/caf\u00e9', '/%2e%2e%2fadmin', '/a%2F..%2Fb', '/a/..%5cb', '/..;/admin', '/a/.;x/b']) {
    it(`path ${JSON.stringify(bad)} is unsafe`, () => assert.equal(isSafeRelativePath(bad), false))
  }
  it('dots inside names are fine', () => {
    assert.equal(isSafeRelativePath('/v1.2/file..txt?a=../b'), true)
  })
  it('joins DOWNSTREAM_URL with the rest and both queries', () => {
    const base = new URL('http://svc:8080/api/?k=v')
    assert.equal(joinDownstreamPath(base, '/orders?x=1'), '/api/orders?k=v&x=1')
    assert.equal(joinDownstreamPath(base, '/'), '/api/?k=v')
    assert.equal(joinDownstreamPath(new URL('http://svc:8080'), '/a'), '/a')
    assert.equal(joinDownstreamPath(base, null), '/api/?k=v')
  })
})

describe('header filtering', () => {
  it('drops hop-by-hop, Connection-named, reserved and broker headers; reads control headers', () => {
    const raw = [
      'Host', 'x', 'Connection', 'keep-alive, X-Secret', 'X-Secret', 's', 'Keep-Alive', '5', 'TE', 'trailers',
      'Upgrade', 'h2c', 'Proxy-Authorization', 'p', 'Content-Length', '3', 'Expect', '100-continue',
      'X-HTTP-Method', 'DELETE', 'x-relayq-attempts', '9', 'X-Death', 'd', 'x-delivery-count', '9',
      'x-relayq-timeout-ms', '500', 'Content-Type', 'text/plain', 'Cookie', 'a=1', 'Cookie', 'b=2',
      'Authorization', 'Bearer t', 'Prefer', 'respond-async', 'traceparent', 'tp',
    ]
    const s = scanRequestHeaders(raw, 'authorization', false)
    assert.deepEqual(s.table, { 'content-type': 'text/plain', cookie: ['a=1', 'b=2'], authorization: 'Bearer t', prefer: 'respond-async', traceparent: 'tp' })
    assert.equal(s.timeoutMs, '500')
    assert.equal(s.contentLength, '3')
    assert.equal(s.contentType, 'text/plain')
    assert.equal(s.jobToken, 'Bearer t')
    assert.equal(s.prefer, 'respond-async')
    assert.equal(scanRequestHeaders(['Authorization', 'Bearer t'], 'authorization', true).table.authorization, undefined)
  })

  it('filters response headers the same way, keeping Content-Length only for HEAD', () => {
    const raw = ['Content-Length', '5', 'Connection', 'x-hop', 'x-hop', '1', 'Transfer-Encoding', 'chunked', 'X-Relayq-Error', 'forged', 'Set-Cookie', 'a', 'Set-Cookie', 'b', 'Content-Type', 'text/html'].map((s) => Buffer.from(s))
    assert.deepEqual(responseHeaderTable(raw, false), { table: { 'set-cookie': ['a', 'b'], 'content-type': 'text/html' }, contentType: 'text/html' })
    assert.equal(responseHeaderTable(raw, true).table['content-length'], '5')
  })
})
