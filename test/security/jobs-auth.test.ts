// /jobs/* and /metrics on the public port skipped ENQUEUER_AUTH_TOKENS_FILE
// (issue 21, item 13): anyone could read metrics, and a 403 against a 404 told
// which job ids exist. With tokens configured they need one, checked before
// any lookup, so an unauthenticated caller cannot tell a job from no job.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send, type Answer } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

const MISSING = '00000000-0000-4000-8000-000000000000'

describe('authentication of /jobs and /metrics on the public port', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('jobsauth')
  const results = `t-results-${randomBytes(4).toString('hex')}`
  const dir = mkdtempSync(join(tmpdir(), 'relayq-jobsauth-'))
  const tokens = join(dir, 'tokens')
  const running: TestEnqueuer[] = []

  before(async () => {
    writeFileSync(tokens, 'alice\n')
    broker = await connectBroker()
    echo = await startEcho()
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    for (const e of running) await e.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    rmSync(dir, { recursive: true, force: true })
    await broker.close()
  })

  async function enqueuer (env: Record<string, string>): Promise<TestEnqueuer> {
    const e = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results, ...env })
    running.push(e)
    return e
  }

  function same (a: Answer, b: Answer): void {
    assert.equal(a.status, b.status)
    assert.equal(a.headers['x-relayq-error'], b.headers['x-relayq-error'])
    assert.equal(a.body.toString(), b.body.toString())
  }

  it('ENQUEUER_AUTH_TOKENS_FILE: an existing and a missing job both answer 401 without a valid token; /metrics too', async () => {
    const enq = await enqueuer({ ENQUEUER_AUTH_TOKENS_FILE: tokens })
    const alice = { authorization: 'Bearer alice' }
    const created = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', ...alice } })
    assert.equal(created.status, 202)
    const id = created.json<{ job_id: string }>().job_id
    for (const headers of [{}, { authorization: 'Bearer eve' }]) {
      const existing = await send(`${enq.url}/jobs/${id}`, { headers })
      const missing = await send(`${enq.url}/jobs/${MISSING}`, { headers })
      assert.equal(existing.status, 401)
      assert.equal(existing.headers['x-relayq-error'], 'RQ_ERR_UNAUTHORIZED')
      same(existing, missing)
      assert.equal((await send(`${enq.url}/metrics`, { headers })).status, 401)
    }
    assert.equal((await send(`${enq.url}/jobs/${id}`, { headers: alice })).status, 200)
    assert.equal((await send(`${enq.url}/jobs/${MISSING}`, { headers: alice })).status, 404)
    assert.equal((await send(`${enq.url}/metrics`, { headers: alice })).status, 200)
    // Probes stay open: a kubelet carries no token.
    assert.equal((await send(`${enq.url}/readyz`)).status, 200)
    assert.equal((await send(`${enq.url}/livez`)).status, 200)
  })

  it('ASYNC_REQUIRE_AUTH: without the header an existing and a missing job answer alike (401)', async () => {
    const enq = await enqueuer({ ASYNC_REQUIRE_AUTH: 'true' })
    const created = await send(`${enq.url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', authorization: 'Bearer bob' } })
    assert.equal(created.status, 202)
    const id = created.json<{ job_id: string }>().job_id
    const existing = await send(`${enq.url}/jobs/${id}`)
    assert.equal(existing.status, 401)
    same(existing, await send(`${enq.url}/jobs/${MISSING}`))
  })
})
