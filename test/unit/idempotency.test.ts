// The pure parts of idempotency keys: the header, the fingerprint, the
// scope, Prefer: wait, and the in-memory store's claims, expiry and bounds.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, loadConfig } from '../../src/config/load'
import { fingerprint, parseKey, prefersWait, scopedKey } from '../../src/enqueuer/idempotency/key'
import { MemoryIdempotencyStore } from '../../src/enqueuer/idempotency/memory-store'

describe('Idempotency-Key header', () => {
  it('takes one RFC 8941 string of 1 to 255 printable ASCII characters', () => {
    assert.equal(parseKey('"abc"'), 'abc')
    assert.equal(parseKey(' "a b" '), 'a b')
    assert.equal(parseKey('"a\\"b\\\\c"'), 'a"b\\c')
    assert.equal(parseKey(`"${'x'.repeat(255)}"`), 'x'.repeat(255))
    for (const bad of ['abc', '""', '"', `"${'x'.repeat(256)}"`, '"a\\b"', '"a"b"', '"é"', '"a\tb"', '"a", "b"', ':YWJj:', '"a\\"']) {
      assert.equal(parseKey(bad), null, bad)
    }
  })

  it('fingerprints method, target and body; scopes by service and caller', () => {
    const f = fingerprint('POST', '/s/a?x=1', Buffer.from('b'))
    assert.equal(f, fingerprint('POST', '/s/a?x=1', Buffer.from('b')))
    assert.notEqual(f, fingerprint('PUT', '/s/a?x=1', Buffer.from('b')))
    assert.notEqual(f, fingerprint('POST', '/s/a?x=2', Buffer.from('b')))
    assert.notEqual(f, fingerprint('POST', '/s/a?x=1', Buffer.from('c')))
    assert.notEqual(scopedKey('s', 'Bearer a', 'k'), scopedKey('s', 'Bearer b', 'k'))
    assert.notEqual(scopedKey('s', '', 'k'), scopedKey('t', '', 'k'))
    // No separator games: ("s", "a\nk") is not ("s\na", "k").
    assert.notEqual(scopedKey('s', 'a\nb', 'k'), scopedKey('s', 'a', 'b\nk'))
  })

  it('Prefer: wait, alone or among other preferences', () => {
    for (const yes of ['wait', 'WAIT', 'wait=10', 'respond-async, wait=5', 'handling=lenient; wait']) assert.ok(prefersWait(yes), yes)
    for (const no of [undefined, '', 'respond-async', 'waiting', 'nowait']) assert.ok(!prefersWait(no), String(no))
  })
})

describe('in-memory idempotency store', () => {
  const pending = (claim: string) => ({ state: 'pending' as const, fingerprint: 'f', claim })
  const done = { state: 'done' as const, fingerprint: 'f', answer: { status: 200, headers: [], body: '', correlationId: 'c' } }

  it('one claim wins; release frees only its own claim; completion and expiry', async () => {
    let now = 0
    const store = new MemoryIdempotencyStore(10, 1e6, () => now)
    assert.equal(await store.claim('k', pending('a'), 10), null)
    assert.deepEqual(await store.claim('k', pending('b'), 10), pending('a'))
    await store.release('k', 'b')
    assert.deepEqual(await store.claim('k', pending('b'), 10), pending('a'))
    await store.release('k', 'a')
    assert.equal(await store.claim('k', pending('b'), 10), null)
    await store.complete('k', done, 10)
    await store.release('k', 'b')
    assert.deepEqual(await store.claim('k', pending('c'), 10), done)
    now = 10001
    assert.equal(await store.claim('k', pending('c'), 10), null)
  })

  it('is bounded: past its count the oldest key goes first', async () => {
    const store = new MemoryIdempotencyStore(3)
    for (const k of ['a', 'b', 'c', 'd']) await store.complete(k, done, 60)
    assert.equal(store.size, 3)
    assert.equal(await store.claim('a', pending('x'), 60), null)
    assert.deepEqual(await store.claim('d', pending('x'), 60), done)
  })
})

describe('idempotency settings', () => {
  const enq = { RELAYQ_MODE: 'enqueuer', RABBITMQ_URL: 'amqp://localhost' }
  const deq = { RELAYQ_MODE: 'dequeuer', RABBITMQ_URL: 'amqp://localhost', SERVICE_NAME: 's', DOWNSTREAM_URL: 'http://127.0.0.1:1' }
  const named = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env)
    } catch (err) {
      assert.ok(err instanceof ConfigError)
      return err.problems.map((p) => p.variable)
    }
    return []
  }

  it('off by default; defaults for TTL, body bound and grace; the store follows REDIS_URL', () => {
    const off = loadConfig(enq).enqueuer!.idempotency
    assert.deepEqual(off, { enabled: false, ttlSeconds: 86400, maxBodyBytes: 1024 * 1024, graceMs: 30000, redisUrl: null })
    const on = loadConfig({ ...enq, ENQUEUER_IDEMPOTENCY: 'true', REDIS_URL: 'redis://r:6379/1', ENQUEUER_IDEMPOTENCY_GRACE_SECONDS: '0' }).enqueuer!.idempotency
    assert.equal(on.enabled, true)
    assert.equal(on.redisUrl, 'redis://r:6379/1')
    assert.equal(on.graceMs, 0)
    assert.equal(loadConfig(deq).dequeuer!.idempotency, null)
    assert.deepEqual(loadConfig({ ...deq, DEQUEUER_IDEMPOTENCY_REDIS_URL: 'redis://r' }).dequeuer!.idempotency, { redisUrl: 'redis://r', ttlSeconds: 86400 })
  })

  it('refuses bad values, naming the variable', () => {
    assert.deepEqual(named({ ...enq, ENQUEUER_IDEMPOTENCY: 'yes please' }), ['ENQUEUER_IDEMPOTENCY'])
    assert.deepEqual(named({ ...enq, ENQUEUER_IDEMPOTENCY_TTL: '0' }), ['ENQUEUER_IDEMPOTENCY_TTL'])
    assert.deepEqual(named({ ...enq, ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES: '-1' }), ['ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES'])
    assert.deepEqual(named({ ...deq, DEQUEUER_IDEMPOTENCY_REDIS_URL: 'http://r' }), ['DEQUEUER_IDEMPOTENCY_REDIS_URL'])
  })
})
