// The pure parts of idempotency keys: the header, the fingerprint, the
// scope, Prefer: wait, and the in-memory store's claims, expiry and bounds.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
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
