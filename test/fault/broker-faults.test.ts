// The broker going away under load, on a private RabbitMQ node of this test's
// own (the shared broker is never stopped or alarmed): a restart, a memory
// alarm, and a network stall through a proxy the test controls. relayq's
// processes stay up, answer promptly while the broker is gone, and serve
// again soon after it is back; every request is accounted for.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startEcho, type Echo } from '../helpers/echo'
import { describeAccounting, Load, ServiceLedger } from '../helpers/ledger'
import { PrivateBroker } from '../helpers/private-broker'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { TcpProxy } from '../helpers/tcp-proxy'
import { sleep, waitFor } from '../helpers/wait'

function p99 (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0
}

describe('broker faults', () => {
  const broker = new PrivateBroker()
  let proxy: TcpProxy
  let echo: Echo
  let ledger: ServiceLedger
  let enqueuer: RelayProcess
  let dequeuer: RelayProcess
  let enqUrl = ''
  let deqAdmin = ''
  const service = 'faulty'

  before(async () => {
    await broker.start()
    // Every relayq connection goes through the proxy, so a test can also stall the network.
    proxy = new TcpProxy('127.0.0.1', broker.port)
    await proxy.start()
    ledger = new ServiceLedger()
    echo = await startEcho(ledger.behaviour())
    const url = `amqp://guest:guest@127.0.0.1:${proxy.port}`
    const common = { RABBITMQ_URL: url, RABBITMQ_HEARTBEAT_SECONDS: '2', RABBITMQ_RECONNECT_MAX_MS: '500', LOG_LEVEL: 'warn' }
    const adminPort = await freePort()
    dequeuer = spawnRelay({ ...common, RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1' })
    deqAdmin = `http://127.0.0.1:${adminPort}`
    const port = await freePort()
    enqueuer = spawnRelay({ ...common, RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ENQUEUER_PUBLISH_TIMEOUT_MS: '1000', ENQUEUER_REPLY_TIMEOUT: '10', ENQUEUER_BREAKER_ENABLED: 'false' })
    enqUrl = `http://127.0.0.1:${port}`
    await waitReady(deqAdmin)
    await waitReady(enqUrl)
  })

  after(async () => {
    enqueuer?.kill('SIGKILL')
    dequeuer?.kill('SIGKILL')
    await echo?.close()
    await proxy?.stop()
    await broker.ctl('set_vm_memory_high_watermark', '0.4').catch(() => {})
    await broker.stop()
  })

  function alive (): void {
    assert.equal(enqueuer.child.exitCode, null, 'the enqueuer process stays up')
    assert.equal(dequeuer.child.exitCode, null, 'the dequeuer process stays up')
  }

  it('broker restart (stop_app, start_app) under 100 req/s', async () => {
    const load = new Load(() => `${enqUrl}/${service}/x`)
    // The load runs until 6 s after start_app returns, however long stop_app and start_app take on a busy machine.
    const done = load.steady(100, 60000)
    await sleep(3000)
    await broker.stopApp()
    const stoppedAt = Date.now()
    await sleep(4000)
    // The broker takes connections again before start_app returns (seconds earlier on a loaded machine): "down" ends
    // when start_app is called, "up" starts when it returns.
    const startCalledAt = Date.now()
    await broker.startApp()
    const startedAt = Date.now()
    await sleep(6000)
    load.stop()
    await done
    await load.close()
    alive()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('broker restart', acc)}`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0, acc.unaccountedIds.join(','))
    const whileDown = load.outcomes.filter((o) => o.sentAt > stoppedAt + 500 && o.sentAt < startCalledAt - 200)
    assert.ok(whileDown.length > 100, `${whileDown.length} requests while down`)
    for (const o of whileDown) assert.equal(o.code, 'RQ_ERR_BROKER_UNAVAILABLE', `${o.status} ${o.code ?? ''} ${o.body} sent ${o.sentAt - stoppedAt} ms after stop_app`)
    const fast = p99(whileDown.map((o) => o.ms))
    console.log(`# while down: ${whileDown.length} requests, p99 ${fast.toFixed(1)} ms, max ${Math.max(...whileDown.map((o) => o.ms)).toFixed(1)} ms`)
    assert.ok(fast <= 100, `p99 ${fast} ms while the broker is down`)
    const cut = load.outcomes.filter((o) => o.code === 'RQ_ERR_CONNECTION_LOST')
    for (const o of cut) assert.ok(o.ms < 1000 + 200, `a waiting request was answered ${o.ms} ms after it was sent`)
    const firstOk = load.outcomes.filter((o) => o.sentAt >= startedAt && o.status === 200).map((o) => o.sentAt + o.ms).sort((a, b) => a - b)[0]
    assert.ok(firstOk !== undefined && firstOk - startedAt <= 5000, `first 200 ${firstOk === undefined ? 'never' : `${firstOk - startedAt} ms`} after start_app`)
    console.log(`# first 200 ${firstOk - startedAt} ms after start_app returned`)
  })

  it('close_all_connections under 100 req/s: both sides reconnect and serve again', async () => {
    await waitReady(enqUrl)
    await waitReady(deqAdmin)
    const load = new Load(() => `${enqUrl}/${service}/x`)
    const done = load.steady(100, 60000)
    await sleep(2000)
    await broker.ctl('close_all_connections', 'relayq fault test')
    const closedAt = Date.now()
    await sleep(5000)
    load.stop()
    await done
    await load.close()
    alive()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('close_all_connections', acc)}`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0, acc.unaccountedIds.join(','))
    const firstOk = load.outcomes.filter((o) => o.sentAt >= closedAt && o.status === 200).map((o) => o.sentAt + o.ms).sort((a, b) => a - b)[0]
    assert.ok(firstOk !== undefined && firstOk - closedAt <= 5000, `first 200 ${firstOk === undefined ? 'never' : `${firstOk - closedAt} ms`} after close_all_connections`)
    console.log(`# first 200 ${firstOk - closedAt} ms after close_all_connections returned`)
  })

  it('memory alarm: 503 with Retry-After at once, requests flow again after', async () => {
    await waitReady(enqUrl)
    await waitReady(deqAdmin)
    const load = new Load(() => `${enqUrl}/${service}/x`)
    // The load runs until 5 s after the alarm is cleared, however long rabbitmqctl takes on a busy machine.
    const done = load.steady(50, 60000)
    await sleep(2000)
    const alarmAt = Date.now()
    try {
      await broker.ctl('set_vm_memory_high_watermark', '0.0000001')
      await sleep(4000)
    } finally {
      await broker.ctl('set_vm_memory_high_watermark', '0.4')
    }
    const clearedAt = Date.now()
    await sleep(5000)
    load.stop()
    await done
    await load.close()
    alive()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('memory alarm', acc)}`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    const blocked = load.outcomes.filter((o) => o.code === 'RQ_ERR_BROKER_BLOCKED')
    assert.ok(blocked.length > 50, `${blocked.length} answered BROKER_BLOCKED`)
    assert.ok(p99(blocked.map((o) => o.ms)) <= 100, 'blocked answers are immediate')
    // Before the broker says "blocked" (it does after the first publish), publishes wait for a confirm that does not come.
    for (const o of load.outcomes.filter((x) => x.sentAt > alarmAt && x.sentAt < clearedAt)) {
      assert.ok(o.status === 200 || o.code === 'RQ_ERR_BROKER_BLOCKED' || o.code === 'RQ_ERR_PUBLISH_TIMEOUT', `${o.status} ${o.code ?? ''}`)
      if (o.code === 'RQ_ERR_PUBLISH_TIMEOUT') assert.ok(o.ms < 1000 + 300)
    }
    const after = load.outcomes.filter((o) => o.sentAt > clearedAt + 2000)
    assert.ok(after.length > 0, 'requests after the alarm')
    for (const o of after) assert.equal(o.status, 200, `after the alarm: ${o.status} ${o.code ?? ''} ${o.body} (${o.sentAt - clearedAt} ms after clearing)`)
  })

  it('network stall: detected within two heartbeats, 503 meanwhile, serving again after', async () => {
    await waitReady(enqUrl)
    await waitReady(deqAdmin)
    const load = new Load(() => `${enqUrl}/${service}/x`)
    const done = load.steady(50, 14000)
    await sleep(2000)
    const stallAt = Date.now()
    proxy.setMode('blackhole')
    const detected = await waitFor(async () => {
      const r = await fetch(`${enqUrl}/readyz`)
      return r.status === 503 ? Date.now() : null
    }, { timeoutMs: 15000, intervalMs: 100, what: 'the enqueuer to notice the stall' })
    await sleep(Math.max(0, 8000 - (Date.now() - stallAt)))
    proxy.setMode('pass')
    proxy.cut()
    const passAt = Date.now()
    await done
    await load.close()
    alive()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('network stall', acc)}; stall detected after ${detected - stallAt} ms`)
    // Heartbeat 2 s: amqplib declares the peer dead after two missed intervals (plus the check's granularity).
    assert.ok(detected - stallAt <= 2 * 2000 + 2000, `detected after ${detected - stallAt} ms`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0)
    for (const o of load.outcomes.filter((x) => x.sentAt > stallAt && x.sentAt < passAt)) {
      assert.ok(o.status === 200 || o.status === 502 || o.status === 503 || o.status === 504, `${o.status} ${o.code ?? ''}`)
      if (o.code === 'RQ_ERR_PUBLISH_TIMEOUT' || o.code === 'RQ_ERR_BROKER_UNAVAILABLE') assert.ok(o.ms <= 1000 + 100 + 200, `${o.code} after ${o.ms} ms`)
    }
    const back = load.outcomes.filter((o) => o.status === 200 && o.sentAt > passAt).map((o) => o.sentAt - passAt).sort((a, b) => a - b)[0]
    assert.ok(back !== undefined && back <= 5000, `served again ${back ?? 'never'} ms after the network came back`)
  })

  it('SIGTERM to the enqueuer mid-load: accepted requests are answered, then it exits 0', async () => {
    await waitReady(enqUrl)
    const load = new Load(() => `${enqUrl}/${service}/x`)
    echo.behave(ledger.behaviour((req, res) => { setTimeout(() => { res.writeHead(200); res.end(req.body) }, 300) }))
    const done = load.steady(100, 3000)
    await sleep(1500)
    const t0 = Date.now()
    enqueuer.kill('SIGTERM')
    const exit = await enqueuer.exited
    const stopMs = Date.now() - t0
    await done
    await load.close()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting('SIGTERM enqueuer', acc)}; exited in ${stopMs} ms`)
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0, acc.unaccountedIds.join(','))
    assert.ok(acc.answeredByService >= 100)
  })
})
