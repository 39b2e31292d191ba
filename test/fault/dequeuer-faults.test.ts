// Dequeuers dying and being replaced under load: kill -9 mid-load, SIGTERM
// mid-load, and a rolling restart. Every request is accounted for.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { describeAccounting, Load, ServiceLedger } from '../helpers/ledger'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

describe('dequeuer faults', () => {
  let broker: TestBroker
  let echo: Echo
  let ledger: ServiceLedger
  let enq: TestEnqueuer
  const service = uniqueService('deqfault')
  const running = new Set<RelayProcess>()

  async function dequeuer (env: Record<string, string> = {}): Promise<{ p: RelayProcess, admin: string }> {
    const port = await freePort()
    const p = spawnRelay({
      RELAYQ_MODE: 'dequeuer',
      SERVICE_NAME: service,
      DOWNSTREAM_URL: echo.url,
      METRICS_PORT: String(port),
      METRICS_HOST: '127.0.0.1',
      DEQUEUER_CONCURRENCY: '50',
      LOG_LEVEL: 'warn',
      ...env,
    })
    running.add(p)
    void p.exited.then(() => running.delete(p))
    const admin = `http://127.0.0.1:${port}`
    await waitReady(admin)
    return { p, admin }
  }

  /** A fresh ledger per test; the service takes 20 ms per call, enough for kills to land on messages in flight. */
  function newLedger (): void {
    ledger = new ServiceLedger()
    echo.behave(ledger.behaviour((req, res) => { setTimeout(() => { res.writeHead(200); res.end(req.body) }, 20) }))
  }

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '30' })
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await enq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('kill -9 of a dequeuer during 2,000 requests: the other serves the redelivered ones, nothing unaccounted', async () => {
    newLedger()
    const a = await dequeuer()
    const b = await dequeuer()
    const load = new Load(() => `${enq.url}/${service}/work`)
    const done = load.burst(2000, 64)
    await waitFor(() => load.outcomes.length >= 600, { timeoutMs: 30000, what: '30% answered' })
    process.kill(a.p.pid, 'SIGKILL')
    await sleep(2000)
    const a2 = await dequeuer()
    await done
    await load.close()
    const acc = load.account(ledger, await broker.drain(`${service}_requests.dlq`))
    console.log(`# ${describeAccounting('kill -9 dequeuer', acc)}`)
    assert.equal(acc.sent, 2000)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    assert.equal(acc.answeredByService, 2000, JSON.stringify(acc.relayqErrors))
    assert.ok(acc.duplicateExecutions <= 50, `duplicates ${acc.duplicateExecutions} <= prefetch`)
    assert.equal(enq.context.pool.pendingReplies, 0)
    b.p.kill('SIGTERM')
    a2.p.kill('SIGTERM')
    assert.equal((await b.p.exited).code, 0)
    assert.equal((await a2.p.exited).code, 0)
  })

  it('SIGTERM of a dequeuer mid-load: in-flight messages finish, the rest go back uncounted, exit 0', async () => {
    newLedger()
    const a = await dequeuer({ SHUTDOWN_TIMEOUT_SECONDS: '10' })
    const b = await dequeuer()
    const load = new Load(() => `${enq.url}/${service}/work`)
    const done = load.burst(1000, 64)
    await waitFor(() => load.outcomes.length >= 300, { timeoutMs: 30000, what: 'load under way' })
    const t0 = Date.now()
    a.p.kill('SIGTERM')
    const exit = await a.p.exited
    const drainMs = Date.now() - t0
    await done
    await load.close()
    const acc = load.account(ledger, await broker.drain(`${service}_requests.dlq`))
    console.log(`# ${describeAccounting('SIGTERM dequeuer', acc)}; drained and exited in ${drainMs} ms`)
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.ok(drainMs < 10000)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    assert.equal(acc.answeredByService, 1000, JSON.stringify(acc.relayqErrors))
    assert.equal(acc.deadLettered, 0)
    assert.equal(acc.duplicateExecutions, 0, 'a graceful drain executes nothing twice')
    b.p.kill('SIGTERM')
    await b.p.exited
  })

  it('rolling restart of two dequeuers under steady load: zero failed requests', async () => {
    newLedger()
    const a = await dequeuer()
    const b = await dequeuer()
    const load = new Load(() => `${enq.url}/${service}/work`)
    const done = load.steady(150, 8000)
    await sleep(1000)
    const c = await dequeuer()
    a.p.kill('SIGTERM')
    assert.equal((await a.p.exited).code, 0)
    await sleep(1000)
    const d = await dequeuer()
    b.p.kill('SIGTERM')
    assert.equal((await b.p.exited).code, 0)
    await done
    await load.close()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('rolling restart', acc)}`)
    assert.ok(acc.sent > 1000)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    assert.equal(acc.answeredByService, acc.sent, JSON.stringify(acc.relayqErrors))
    assert.equal(acc.duplicateExecutions, 0, 'graceful replacements execute nothing twice')
    c.p.kill('SIGTERM')
    d.p.kill('SIGTERM')
    await Promise.all([c.p.exited, d.p.exited])
  })
})
