// POST /drain ends the process: the drain answers once done, then the process
// closes and exits 0, so an orchestrator never keeps a drained process that is
// alive but useless (readiness 503, liveness 200). GET /drain is refused.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'

describe('POST /drain', () => {
  let broker: TestBroker
  let echo: Echo
  const service = uniqueService('drainexit')
  const running: RelayProcess[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  async function drainAndExit (p: RelayProcess, admin: string): Promise<void> {
    const get = await send(`${admin}/drain`)
    assert.equal(get.status, 405, 'GET /drain is refused')
    assert.equal(get.headers.allow, 'POST')
    assert.equal(get.headers['x-relayq-error'], 'RQ_ERR_METHOD_NOT_ALLOWED')
    assert.equal(p.child.exitCode, null, 'a refused GET does not drain')
    const drained = await send(`${admin}/drain`, { method: 'POST' })
    assert.equal(drained.status, 200)
    assert.deepEqual(drained.json(), { status: 'drained' })
    assert.deepEqual(await p.exited, { code: 0, signal: null })
    assert.ok(p.logs().some((l) => l.msg === 'shutting down' && l.reason === 'drained'), p.output())
  }

  it('the dequeuer drains, answers, and exits 0', async () => {
    const adminPort = await freePort()
    const deq = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1' })
    running.push(deq)
    await waitReady(`http://127.0.0.1:${adminPort}`)
    await drainAndExit(deq, `http://127.0.0.1:${adminPort}`)
  })

  it('the enqueuer (ADMIN_PORT set) drains, answers, and exits 0', async () => {
    const adminPort = await freePort()
    const enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', ADMIN_PORT: String(adminPort), ADMIN_HOST: '127.0.0.1' })
    running.push(enq)
    await waitReady(`http://127.0.0.1:${adminPort}`)
    await drainAndExit(enq, `http://127.0.0.1:${adminPort}`)
  })

  it('an enqueuer cluster primary stops its workers and exits 0', async () => {
    const adminPort = await freePort()
    const enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_WORKERS: '2', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', ADMIN_PORT: String(adminPort), ADMIN_HOST: '127.0.0.1', ASYNC_JOBS: 'false' })
    running.push(enq)
    await waitReady(`http://127.0.0.1:${adminPort}`, 20000)
    await drainAndExit(enq, `http://127.0.0.1:${adminPort}`)
  })
})
