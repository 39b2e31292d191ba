// A service that is slow, hangs, or resets connections, under load: the
// timeouts answer as documented, a healthy replica takes the work while the
// breaker keeps the sick one out, and nothing leaks (open sockets and memory
// of the dequeuer come back to their baseline).
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho } from '../helpers/echo'
import { describeAccounting, Load, ServiceLedger } from '../helpers/ledger'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

const openSockets = (pid: number): number => readdirSync(`/proc/${pid}/fd`).filter((fd) => {
  try { return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:') } catch { return false }
}).length
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024

describe('downstream faults', () => {
  let broker: TestBroker
  let enq: TestEnqueuer
  const running: RelayProcess[] = []
  const services: string[] = []

  before(async () => {
    broker = await connectBroker()
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '20', ENQUEUER_BREAKER_ENABLED: 'false' })
  })
  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await enq.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  async function dequeuer (service: string, downstream: string, env: Record<string, string> = {}): Promise<{ p: RelayProcess, admin: string }> {
    const port = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: downstream, METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1', LOG_LEVEL: 'warn', DEQUEUER_CONCURRENCY: '32', ...env })
    running.push(p)
    const admin = `http://127.0.0.1:${port}`
    await waitReady(admin)
    return { p, admin }
  }

  it('slow calls (1 in 10 takes twice DOWNSTREAM_TIMEOUT): 504 within the timeout + 1 s, the rest unharmed, sockets back to baseline', async () => {
    const service = uniqueService('slowdown')
    services.push(service)
    const ledger = new ServiceLedger()
    let n = 0
    const echo = await startEcho(ledger.behaviour((req, res) => {
      const slow = ++n % 10 === 0
      setTimeout(() => { if (!res.destroyed) { res.writeHead(200); res.end(req.body) } }, slow ? 2000 : 5)
    }))
    const { p } = await dequeuer(service, echo.url, { DOWNSTREAM_TIMEOUT: '1', DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false' })
    const baseline = openSockets(p.pid)
    const load = new Load(() => `${enq.url}/${service}/x`)
    await load.burst(1000, 32)
    await load.close()
    const acc = load.account(ledger, await broker.drain(`${service}_requests.dlq`))
    console.log(`# ${describeAccounting('slow service', acc)}`)
    assert.equal(acc.unaccounted, 0)
    const timedOut = load.outcomes.filter((o) => o.code === 'RQ_ERR_DOWNSTREAM_TIMEOUT')
    assert.ok(timedOut.length >= 80 && timedOut.length <= 120, `${timedOut.length} timeouts for 100 slow calls`)
    for (const o of timedOut) assert.ok(o.ms < 1000 + 1000, `a 504 came after ${o.ms} ms`)
    assert.equal(load.outcomes.filter((o) => o.status === 200).length + timedOut.length, 1000)
    await waitFor(() => openSockets(p.pid) <= baseline + 2, { timeoutMs: 8000, what: `sockets back to ${baseline} (now ${openSockets(p.pid)})` })
    await echo.close()
  })

  for (const fault of ['hung', 'resetting'] as const) {
    it(`a ${fault} service: its dequeuer stops consuming, a healthy replica serves everything, nothing dead-lettered, nothing leaks`, async () => {
      const service = uniqueService(fault)
      services.push(service)
      const ledger = new ServiceLedger()
      const sockets = new Set<net.Socket>()
      const upstreams = new Set<net.Socket>()
      let broken = false
      const good = await startEcho(ledger.behaviour())
      // The sick service: healthy at first, then hangs (accepts, never answers) or resets every connection.
      const sickEcho = await startEcho(ledger.behaviour())
      const sick = net.createServer((s) => {
        sockets.add(s)
        s.on('error', () => {})
        if (!broken) {
          const up = net.connect(sickEcho.port, '127.0.0.1')
          upstreams.add(up)
          s.pipe(up).pipe(s)
          up.on('error', () => s.destroy())
          s.on('close', () => up.destroy())
          return
        }
        if (fault === 'resetting') s.resetAndDestroy()
      })
      await new Promise<void>((resolve) => sick.listen(0, '127.0.0.1', resolve))
      const breaker = { CIRCUIT_BREAKER_VOLUME: '10', CIRCUIT_BREAKER_RESET_MS: '2000', DOWNSTREAM_TIMEOUT: '1', DEQUEUER_MAX_ATTEMPTS: '5', DEQUEUER_RETRY_DELAY_MS: '200' }
      const bad = await dequeuer(service, `http://127.0.0.1:${(sick.address() as net.AddressInfo).port}`, breaker)
      await dequeuer(service, good.url, breaker)
      await sleep(500)
      const baseSockets = openSockets(bad.p.pid)
      const baseRss = rssMb(bad.p.pid)
      const load = new Load(() => `${enq.url}/${service}/x`)
      const done = load.steady(50, 12000)
      await sleep(1000)
      broken = true
      // Keep-alive connections opened while healthy must break too: reset them, or cut them from the
      // service so they stay open and silent.
      if (fault === 'resetting') for (const s of sockets) s.resetAndDestroy()
      else for (const up of upstreams) { up.unpipe(); up.destroy() }
      await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 1, { timeoutMs: 8000, what: 'the sick dequeuer to stop consuming' })
      await done
      await load.close()
      const acc = load.account(ledger, await broker.drain(`${service}_requests.dlq`))
      console.log(`# ${describeAccounting(`${fault} service`, acc)}`)
      assert.equal(acc.unaccounted, 0)
      assert.equal(acc.deadLettered, 0, 'nothing dead-lettered because of the open breaker')
      assert.equal(acc.answeredByService, acc.sent, JSON.stringify(acc.relayqErrors))
      broken = false
      for (const s of sockets) s.destroy()
      await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 2, { timeoutMs: 10000, what: 'the recovered dequeuer to consume again' })
      await waitFor(() => openSockets(bad.p.pid) <= baseSockets + 3, { timeoutMs: 10000, what: `sockets back to ${baseSockets} (now ${openSockets(bad.p.pid)})` })
      assert.ok(rssMb(bad.p.pid) < baseRss * 1.25 + 10, `RSS ${rssMb(bad.p.pid).toFixed(0)} MB after, ${baseRss.toFixed(0)} MB before`)
      await new Promise<void>((resolve) => sick.close(() => resolve()))
      await good.close()
      await sickEcho.close()
    })
  }
})
