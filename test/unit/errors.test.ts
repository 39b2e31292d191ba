// The error catalogue: each code's status and phrase, and the one shape every
// answer relayq makes itself has, the admin endpoints' included.
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { ERROR_CODES, errorBody, phraseOf, RelayqError, statusOf } from '../../src/errors'
import { createAdminServer } from '../../src/http/admin'
import { assertRelayqError } from '../helpers/relayq-error'

describe('errors.ts', () => {
  it('every code is RQ_ERR_*, with an error status and a phrase', () => {
    assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length)
    for (const code of ERROR_CODES) {
      assert.match(code, /^RQ_ERR_[A-Z0-9_]+$/)
      assert.ok(statusOf(code) >= 400 && statusOf(code) <= 599, `${code}: ${statusOf(code)}`)
      assert.ok(phraseOf(code).length > 0, code)
      assert.deepEqual(JSON.parse(errorBody(code, 'why').toString()), { error: phraseOf(code), detail: 'why', code })
    }
  })

  it('a RelayqError carries its code, detail, status and cause', () => {
    const cause = new Error('under')
    const err = new RelayqError('RQ_ERR_REPLY_TIMEOUT', 'no reply', { cause })
    assert.equal(err.code, 'RQ_ERR_REPLY_TIMEOUT')
    assert.equal(err.detail, 'no reply')
    assert.equal(err.status, 504)
    assert.equal(err.cause, cause)
  })
})

describe('admin answers', () => {
  let url = ''
  let close: () => Promise<void> = async () => {}

  before(async () => {
    const server = createAdminServer({
      metrics: async () => { throw new RelayqError('RQ_ERR_BROKER_UNAVAILABLE', 'no broker') },
      notReadyReason: () => null,
      drain: async () => { throw new Error('boom') },
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    close = async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
  after(async () => { await close() })

  async function get (path: string, method = 'GET'): Promise<{ status: number, headers: Record<string, string>, body: string }> {
    const res = await fetch(url + path, { method })
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }
  }

  it('an unknown admin path: 404 with the error shape and x-relayq-error', async () => {
    assertRelayqError(await get('/nope'), 404, 'RQ_ERR_NOT_FOUND')
  })

  it('GET /drain: 405, Allow: POST', async () => {
    const res = await get('/drain')
    assertRelayqError(res, 405, 'RQ_ERR_METHOD_NOT_ALLOWED')
    assert.equal(res.headers.allow, 'POST')
  })

  it('a failure answers with its own code when it has one, else RQ_ERR_INTERNAL', async () => {
    assertRelayqError(await get('/metrics'), 503, 'RQ_ERR_BROKER_UNAVAILABLE')
    const drain = assertRelayqError(await get('/drain', 'POST'), 500, 'RQ_ERR_INTERNAL')
    assert.equal(drain.detail, 'drain failed: boom')
  })
})
