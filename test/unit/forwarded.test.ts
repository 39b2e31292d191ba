import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfig } from '../../src/config/load'
import { ForwardedFor } from '../../src/enqueuer/forwarded'
import type { HeaderTable } from '../../src/http/headers'

describe('X-Forwarded-For', () => {
  it('appends the peer as nginx does, or starts the chain with it', () => {
    const all = new ForwardedFor(null)
    const t: HeaderTable = { 'x-forwarded-for': '203.0.113.9' }
    all.apply(t, '::ffff:10.1.2.3')
    assert.equal(t['x-forwarded-for'], '203.0.113.9, 10.1.2.3')
    const empty: HeaderTable = {}
    all.apply(empty, '2001:db8::1')
    assert.equal(empty['x-forwarded-for'], '2001:db8::1')
    const repeated: HeaderTable = { 'x-forwarded-for': ['a', ' b '] }
    all.apply(repeated, '127.0.0.1')
    assert.equal(repeated['x-forwarded-for'], 'a, b, 127.0.0.1')
  })

  it('with trusted proxies: an untrusted peer\'s forwarding headers are dropped, a trusted one\'s kept', () => {
    const some = new ForwardedFor(['10.0.0.0/8', '2001:db8::/32'])
    const headers = (): HeaderTable => ({ 'x-forwarded-for': '1.1.1.1', 'x-real-ip': '1.1.1.1', forwarded: 'for=1.1.1.1', 'x-forwarded-host': 'evil', 'x-forwarded-proto': 'https', other: 'kept' })
    const untrusted = headers()
    some.apply(untrusted, '192.0.2.7')
    assert.deepEqual(untrusted, { other: 'kept', 'x-forwarded-for': '192.0.2.7' })
    const trusted = headers()
    some.apply(trusted, '::ffff:10.9.9.9')
    assert.equal(trusted['x-forwarded-for'], '1.1.1.1, 10.9.9.9')
    assert.equal(trusted['x-real-ip'], '1.1.1.1')
    const v6 = headers()
    some.apply(v6, '2001:db8::5')
    assert.equal(v6['x-forwarded-host'], 'evil')
  })

  it('ENQUEUER_TRUSTED_PROXIES: addresses and ranges, and start-up fails naming it on a bad one', () => {
    const cfg = loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.1,::1' })
    assert.deepEqual(cfg.enqueuer?.trustedProxies, ['10.0.0.0/8', '192.0.2.1/32', '::1/128'])
    assert.equal(loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer?.trustedProxies, null)
    for (const bad of ['10.0.0.0/33', 'proxy.local', '10.0.0.0/x']) {
      assert.throws(() => loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_TRUSTED_PROXIES: bad }), /ENQUEUER_TRUSTED_PROXIES/)
    }
  })
})
