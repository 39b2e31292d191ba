// The bundle alone: copied into an empty folder, it runs both modes and
// carries a request; bad configuration stops it with a message naming the variable.
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { BUNDLE, freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'

describe('the bundle', () => {
  let dir: string
  let broker: TestBroker
  let echo: Echo
  const running: RelayProcess[] = []
  const service = uniqueService('bundle')

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relayq-bundle-'))
    copyFileSync(BUNDLE, join(dir, 'relayq.js'))
    broker = await connectBroker()
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('runs both modes from an empty folder and passes a round trip', async () => {
    const adminPort = await freePort()
    const port = await freePort()
    const deq = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
    const enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
    running.push(deq, enq)
    await waitReady(`http://127.0.0.1:${adminPort}`)
    await waitReady(`http://127.0.0.1:${port}`)
    const res = await send(`http://127.0.0.1:${port}/${service}/hello?q=1`, { method: 'POST', body: 'hi' })
    assert.equal(res.status, 200)
    assert.equal(res.json<{ url: string }>().url, '/hello?q=1')
    const metrics = await send(`http://127.0.0.1:${adminPort}/metrics`)
    assert.match(metrics.body.toString(), /dequeuer_processed_total\{service="[^"]+",status_code="200"\} 1/)
    assert.match(metrics.body.toString(), /relayq_build_info\{version="[^"]+",mode="dequeuer"/)
    enq.kill('SIGTERM')
    deq.kill('SIGTERM')
    assert.deepEqual(await enq.exited, { code: 0, signal: null })
    assert.deepEqual(await deq.exited, { code: 0, signal: null })
    const started = deq.logs().find((l) => l.msg === 'starting relayq')
    assert.ok(started !== undefined, 'logs its start-up')
  })

  it('a second signal during a drain exits at once', async () => {
    const slow = await startEcho((_req, res) => { setTimeout(() => { res.writeHead(200); res.end('late') }, 10000) })
    const adminPort = await freePort()
    const port = await freePort()
    const deq = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: slow.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
    const enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_SECONDS: '30' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
    running.push(deq, enq)
    try {
      await waitReady(`http://127.0.0.1:${adminPort}`)
      await waitReady(`http://127.0.0.1:${port}`)
      const waiting = send(`http://127.0.0.1:${port}/${service}/slow`).catch(() => null)
      await new Promise((resolve) => setTimeout(resolve, 300))
      enq.kill('SIGTERM')
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(enq.child.exitCode, null, 'still draining after the first signal')
      const t0 = Date.now()
      enq.kill('SIGTERM')
      const exit = await enq.exited
      assert.ok(Date.now() - t0 < 1000, 'exits at once on the second')
      assert.notEqual(exit.code, 0)
      await waiting
    } finally {
      deq.kill('SIGKILL')
      await slow.close()
    }
  })

  const bad: Array<[Record<string, string>, string]> = [
    [{}, 'RELAYQ_MODE'],
    [{ RELAYQ_MODE: 'sideways' }, 'RELAYQ_MODE'],
    [{ RELAYQ_MODE: 'dequeuer', DOWNSTREAM_URL: 'http://x' }, 'SERVICE_NAME'],
    [{ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 's', DOWNSTREAM_URL: 'nope' }, 'DOWNSTREAM_URL'],
    [{ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: 'eighty' }, 'ENQUEUER_PORT'],
    [{ RELAYQ_MODE: 'enqueuer', ENQUEUER_REPLY_TIMEOUT: '0' }, 'ENQUEUER_REPLY_TIMEOUT'],
    [{ RELAYQ_MODE: 'enqueuer', RABBITMQ_URL: 'redis://x' }, 'RABBITMQ_URL'],
  ]
  for (const [env, variable] of bad) {
    it(`exits non-zero naming ${variable} for ${JSON.stringify(env)}`, async () => {
      const p = spawnRelay({ ...env, RABBITMQ_URL: env.RABBITMQ_URL ?? 'amqp://127.0.0.1:1' }, { bundle: join(dir, 'relayq.js'), cwd: dir })
      const { code } = await p.exited
      assert.notEqual(code, 0)
      assert.match(p.output(), new RegExp(`${variable}: `))
    })
  }
})
