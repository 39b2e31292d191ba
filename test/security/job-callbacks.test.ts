// A job callback is a request relayq makes to a URL the client chose: it must
// not reach relayq's own listeners (a callback to the admin /drain drained the
// enqueuer, issue 21 item 9) or link-local metadata addresses, the allow-list
// names host and port, and a name is checked on the address it resolves to
// when the callback is sent (DNS rebinding), not only at submit.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '../../src/config/load'
import { startEnqueuer, type RunningEnqueuer } from '../../src/enqueuer'
import { CallbackRefused, CallbackTargets } from '../../src/enqueuer/jobs/callback-target'
import { createLogger } from '../../src/log'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort } from '../helpers/process'
import { LogCapture, startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('callback targets', () => {
  it('an allow-list entry names host and port; a bare host means the scheme\'s default port', () => {
    const t = new CallbackTargets(['hooks.example', 'api.example:8443', '[2001:db8::1]:9000', '2001:db8::2'])
    assert.equal(t.refusal('https://hooks.example/x'), null)
    assert.equal(t.refusal('http://hooks.example/x'), null)
    assert.match(t.refusal('http://hooks.example:8001/drain') ?? '', /ASYNC_CALLBACK_ALLOWED_HOSTS/)
    assert.equal(t.refusal('https://api.example:8443/x'), null)
    assert.notEqual(t.refusal('https://api.example/x'), null)
    assert.equal(t.refusal('http://[2001:db8::1]:9000/x'), null)
    assert.notEqual(t.refusal('http://[2001:db8::1]:9001/x'), null)
    assert.equal(t.refusal('http://[2001:db8::2]/x'), null)
    assert.notEqual(t.refusal('http://user:pw@hooks.example/x'), null)
    assert.notEqual(t.refusal('ftp://hooks.example/x'), null)
  })

  it('never link-local, unspecified or metadata addresses, even when listed', () => {
    const t = new CallbackTargets(['169.254.169.254', '0.0.0.0:8080', '[fe80::1]', '[::ffff:169.254.169.254]', '[fd00:ec2::254]'])
    for (const url of ['http://169.254.169.254/latest/meta-data', 'http://0.0.0.0:8080/', 'http://[fe80::1]/', 'http://[::ffff:169.254.169.254]/', 'http://[fd00:ec2::254]/']) {
      assert.match(t.refusal(url) ?? '', /link-local or unspecified/, url)
    }
  })

  it('never relayq\'s own ports on a local address, even when listed', async () => {
    const t = new CallbackTargets(['127.0.0.1:8001', '127.0.0.1:9000', 'localhost:8001', '[::1]:8001'])
    t.addOwnPorts([8000, 8001, null])
    assert.match(t.refusal('http://127.0.0.1:8001/drain') ?? '', /own listeners/)
    assert.match(t.refusal('http://[::1]:8001/drain') ?? '', /own listeners/)
    assert.equal(t.refusal('http://127.0.0.1:9000/hook'), null)
    // A name passes at submit; its lookup yields only allowed addresses, here none.
    assert.equal(t.refusal('http://localhost:8001/drain'), null)
    const err = await new Promise<Error | null>((resolve) => t.lookupFor(8001)('localhost', { all: true }, (e) => resolve(e)))
    assert.ok(err instanceof CallbackRefused, String(err))
    const ok = await new Promise<unknown>((resolve) => t.lookupFor(9000)('localhost', { all: true }, (e, a) => resolve(e ?? a)))
    assert.ok(Array.isArray(ok) && ok.length > 0)
  })
})

describe('a callback aimed at the enqueuer\'s admin port', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('cbdrain')
  const results = `t-results-${randomBytes(4).toString('hex')}`
  const running: RunningEnqueuer[] = []

  before(async () => {
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
    await broker.close()
  })

  async function enqueuer (allowed: (admin: number) => string): Promise<{ url: string, admin: string, enq: RunningEnqueuer, logs: LogCapture }> {
    const adminPort = await freePort()
    const config = loadConfig({
      RELAYQ_MODE: 'enqueuer',
      RABBITMQ_URL: AMQP_URL,
      ENQUEUER_HOST: '127.0.0.1',
      ADMIN_PORT: String(adminPort),
      ADMIN_HOST: '127.0.0.1',
      ASYNC_RESULTS_QUEUE: results,
      ASYNC_CALLBACK_ALLOWED_HOSTS: allowed(adminPort),
      LOG_LEVEL: 'warn',
    })
    const logs = new LogCapture()
    const enq = await startEnqueuer(config, { logger: createLogger('warn', { mode: 'enqueuer' }, logs), registry: null, port: 0 })
    running.push(enq)
    await enq.connected
    return { url: `http://127.0.0.1:${enq.port}`, admin: `http://127.0.0.1:${adminPort}`, enq, logs }
  }

  it('by address: refused at submit (it was accepted and drained the enqueuer)', async () => {
    const { url, admin, enq } = await enqueuer((p) => `127.0.0.1:${p}`)
    const res = await send(`${url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'x-relayq-callback-url': `${admin}/drain` } })
    assert.equal(res.status, 400, res.body.toString())
    assert.equal(res.headers['x-relayq-error'], 'RQ_ERR_CALLBACK_NOT_ALLOWED')
    assert.equal(enq.admission.draining, false)
    assert.equal((await send(`${admin}/readyz`)).status, 200)
  })

  it('by a name that resolves to it: the job completes, the callback is refused when sent, nothing drains', async () => {
    const { url, admin, enq, logs } = await enqueuer((p) => `localhost:${p}`)
    const res = await send(`${url}/${service}/x`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'x-relayq-callback-url': `http://localhost:${enq.adminPort}/drain` } })
    assert.equal(res.status, 202, res.body.toString())
    await waitFor(() => logs.has('job callback refused: its address is not allowed'), { what: 'the refused callback' })
    assert.equal(enq.admission.draining, false)
    assert.equal((await send(`${admin}/readyz`)).status, 200)
    assert.equal((await send(`${url}/${service}/after`)).status, 200)
  })
})
