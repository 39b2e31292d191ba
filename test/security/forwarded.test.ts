// Issue 21 item 12: the service learns the client's address as behind nginx
// ($proxy_add_x_forwarded_for): the peer relayq saw is appended to
// X-Forwarded-For; with ENQUEUER_TRUSTED_PROXIES, a peer that is not a trusted
// proxy cannot pass forwarding headers of its own.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

type Seen = Record<string, string | undefined>

describe('forwarding headers', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let open: TestEnqueuer
  let guarded: TestEnqueuer
  let behindLocal: TestEnqueuer
  const service = uniqueService('xff')
  const spoof = { 'x-forwarded-for': '203.0.113.66', 'x-real-ip': '203.0.113.66', forwarded: 'for=203.0.113.66', 'x-forwarded-host': 'bank.example' }

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    open = await startTestEnqueuer({ ASYNC_JOBS: 'false' })
    guarded = await startTestEnqueuer({ ASYNC_JOBS: 'false', ENQUEUER_TRUSTED_PROXIES: '10.0.0.0/8' })
    behindLocal = await startTestEnqueuer({ ASYNC_JOBS: 'false', ENQUEUER_TRUSTED_PROXIES: '127.0.0.1' })
  })

  after(async () => {
    for (const e of [open, guarded, behindLocal]) await e.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  const seen = async (enq: TestEnqueuer, headers: Record<string, string> = {}): Promise<Seen> => {
    const res = await send(`${enq.url}/${service}/who`, { headers })
    assert.equal(res.status, 200)
    return res.json<{ headers: Seen }>().headers
  }

  it('without a header, the service sees the peer as X-Forwarded-For', async () => {
    assert.equal((await seen(open))['x-forwarded-for'], '127.0.0.1')
  })

  it('a client\'s X-Forwarded-For gets the peer appended (the last entry is always one relayq saw)', async () => {
    const h = await seen(open, spoof)
    assert.equal(h['x-forwarded-for'], '203.0.113.66, 127.0.0.1')
    assert.equal(h['x-real-ip'], '203.0.113.66', 'unset ENQUEUER_TRUSTED_PROXIES keeps the other forwarding headers')
  })

  it('ENQUEUER_TRUSTED_PROXIES: a peer outside the list cannot pass forwarding headers', async () => {
    const h = await seen(guarded, spoof)
    assert.equal(h['x-forwarded-for'], '127.0.0.1')
    for (const name of ['x-real-ip', 'forwarded', 'x-forwarded-host']) assert.equal(h[name], undefined, name)
  })

  it('ENQUEUER_TRUSTED_PROXIES: a trusted proxy\'s chain is kept and extended', async () => {
    const h = await seen(behindLocal, { 'x-forwarded-for': '198.51.100.1, 10.0.0.2', 'x-forwarded-host': 'shop.example' })
    assert.equal(h['x-forwarded-for'], '198.51.100.1, 10.0.0.2, 127.0.0.1')
    assert.equal(h['x-forwarded-host'], 'shop.example')
  })
})
