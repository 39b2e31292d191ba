// Scale from zero, with real processes: the bundle as `relayq declare`, as an
// enqueuer with ENQUEUER_NO_CONSUMERS=wait and its KEDA scaler port, and as
// the dequeuer a test "autoscaler" starts when the scaler's stream says
// active; the shared broker; grpc-js with the .proto as KEDA's client.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { scalerClient } from '../helpers/keda-scaler'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { assertRelayqError } from '../helpers/relayq-error'
import { waitFor } from '../helpers/wait'

interface Enqueuer { readonly url: string, readonly admin: string, readonly scalerPort: number, readonly p: RelayProcess }

describe('scale from zero (ENQUEUER_NO_CONSUMERS=wait, KEDA external scaler, relayq declare)', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []
  const running: RelayProcess[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await echo.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  function service (prefix: string): string {
    const s = uniqueService(prefix)
    services.push(s)
    return s
  }

  async function run (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string }> {
    const p = spawnRelay(env, { args })
    const { code } = await p.exited
    return { code, out: p.output() }
  }

  async function declare (name: string, env: Record<string, string> = {}): Promise<void> {
    const r = await run(['declare', '--service', name, '--json'], env)
    assert.equal(r.code, 0, r.out)
  }

  async function enqueuer (env: Record<string, string>): Promise<Enqueuer> {
    const [port, admin, scalerPort] = [await freePort(), await freePort(), await freePort()]
    const p = spawnRelay({
      RELAYQ_MODE: 'enqueuer',
      ENQUEUER_PORT: String(port),
      ENQUEUER_HOST: '127.0.0.1',
      ADMIN_PORT: String(admin),
      ADMIN_HOST: '127.0.0.1',
      KEDA_SCALER_PORT: String(scalerPort),
      ASYNC_JOBS: 'false',
      ...env,
    })
    running.push(p)
    await waitReady(`http://127.0.0.1:${admin}`)
    return { url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${admin}`, scalerPort, p }
  }

  function dequeuer (name: string, adminPort: number, env: Record<string, string> = {}): { p: RelayProcess, admin: string } {
    const admin = String(adminPort)
    const p = spawnRelay({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: name, DOWNSTREAM_URL: echo.url, METRICS_PORT: admin, METRICS_HOST: '127.0.0.1', DLQ_POLL_INTERVAL_MS: '0', ...env })
    running.push(p)
    return { p, admin: `http://127.0.0.1:${admin}` }
  }

  async function metric (admin: string, name: string, service: string): Promise<number> {
    const text = (await send(`${admin}/metrics`)).body.toString()
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`service="${service}"`))
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
  }

  it('20 requests wait for a service at zero; the scaler stream wakes the "autoscaler"; every one is answered by the service', async () => {
    const name = service('cold')
    await declare(name)
    const enq = await enqueuer({ ENQUEUER_NO_CONSUMERS: 'wait', ENQUEUER_REPLY_TIMEOUT: '60' })
    const keda = scalerClient(enq.scalerPort)
    const seen: boolean[] = []
    let firstRequestAt = 0
    let activeAt = 0
    let dequeuerStartedAt = 0
    let dequeuerSpawnedEpoch = 0
    let dq: { p: RelayProcess, admin: string } | null = null
    const dqPort = await freePort()
    const hangUp = keda.stream({ service: name }, (active) => {
      seen.push(active)
      if (!active || dq !== null || firstRequestAt === 0) return
      // The test's autoscaler: scale 0 -> 1 on the first "active".
      activeAt = performance.now()
      dequeuerStartedAt = performance.now()
      dequeuerSpawnedEpoch = Date.now()
      dq = dequeuer(name, dqPort)
    })
    try {
      await waitFor(() => seen.length > 0, { what: 'the stream\'s first value' })
      assert.deepEqual(seen, [false], 'an empty queue with no waiting request is not active')
      assert.equal(await keda.isActive({ service: name }), false)

      firstRequestAt = performance.now()
      const answers = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const res = await send(`${enq.url}/${name}/work/${i}`, { method: 'POST', body: `job ${i}` })
        return { res, at: performance.now() }
      }))
      const firstAnswerAt = Math.min(...answers.map((a) => a.at))
      for (const { res } of answers) {
        assert.equal(res.status, 200, res.body.toString())
        const cold = Number(res.headers['x-relayq-cold-start-ms'])
        assert.ok(Number.isInteger(cold) && cold > 0, `x-relayq-cold-start-ms: ${String(res.headers['x-relayq-cold-start-ms'])}`)
      }
      assert.equal(echo.received.filter((r) => r.url.startsWith('/work/')).length, 20, 'each request ran once')
      assert.ok(dq !== null, 'the stream said active')
      const toActive = activeAt - firstRequestAt
      const toFirstAnswer = firstAnswerAt - firstRequestAt
      const started = dq as { p: RelayProcess, admin: string }
      await waitReady(started.admin, 15000)
      // The process's own count, from reading its configuration to consuming (node's start-up adds to it).
      const ready = started.p.logs().find((l) => l.msg === 'ready')
      const readyMs = Number(ready?.ms)
      const spawnToReady = Date.parse(String(ready?.time)) - dequeuerSpawnedEpoch
      // Generous: the stream promises 200 ms; the machine is loaded.
      assert.ok(toActive < 1500, `active after ${toActive.toFixed(0)} ms`)
      console.log(`# cold start: first request -> stream "active" ${toActive.toFixed(0)} ms; -> first answer ${toFirstAnswer.toFixed(0)} ms; dequeuer spawned after ${(dequeuerStartedAt - firstRequestAt).toFixed(0)} ms, its start-up ${spawnToReady} ms (spawn to consuming; ${readyMs} ms of it from config to consuming)`)
      assert.equal(await metric(enq.admin, 'enqueuer_cold_start_seconds_count', name), 20)
      assert.equal(await metric(enq.admin, 'enqueuer_waiting_for_consumer', name), 0)
      // Served now: the next request is not a cold start.
      const warm = await send(`${enq.url}/${name}/warm`)
      assert.equal(warm.status, 200)
      assert.equal(warm.headers['x-relayq-cold-start-ms'], undefined)
    } finally {
      hangUp()
      keda.close()
    }
  })

  it('with no dequeuer ever: each request gets 504 at its deadline, every replica\'s scaler says active meanwhile, and a dequeuer started later never runs them (counted as expired)', async () => {
    const name = service('never')
    await declare(name)
    // A low breaker threshold: waiting for a first pod must not open it.
    const enq = await enqueuer({ ENQUEUER_NO_CONSUMERS: 'wait', ENQUEUER_BREAKER_THRESHOLD: '2' })
    const other = await enqueuer({ ENQUEUER_NO_CONSUMERS: 'wait' })
    const keda = scalerClient(other.scalerPort)
    try {
      assert.equal(await keda.isActive({ service: name }), false)
      // KEDA hears a misconfigured scaled object as such: INVALID_ARGUMENT, naming the field.
      await assert.rejects(keda.isActive({}), (err: { code?: number, details?: string }) => err.code === 3 && /service/.test(err.details ?? ''))
      await assert.rejects(keda.getMetricSpec({ service: name, targetSize: 'many' }), (err: { code?: number }) => err.code === 3)
      const started = performance.now()
      const pending = Array.from({ length: 5 }, (_, i) => send(`${enq.url}/${name}/late/${i}`, { headers: { 'x-relayq-timeout-ms': '2000' } }))
      await waitFor(async () => await metric(enq.admin, 'enqueuer_waiting_for_consumer', name) === 5, { what: 'five waiting requests' })
      // The other replica has none of them locally: it answers from the broker.
      await waitFor(() => keda.isActive({ service: name }), { what: 'the other replica to say active', timeoutMs: 5000 })
      const [spec] = await keda.getMetricSpec({ service: name, targetSize: '4' })
      assert.ok(spec !== undefined)
      assert.equal(spec.targetSize, 4)
      assert.equal(spec.metricName, `relayq-${name}`)
      const [value] = await keda.getMetrics({ service: name }, spec.metricName)
      assert.equal(value?.metricValue, 5)
      for (const res of await Promise.all(pending)) {
        assertRelayqError(res, 504, 'RQ_ERR_REPLY_TIMEOUT')
        assert.equal(res.headers['x-relayq-cold-start-ms'], undefined)
      }
      const waited = performance.now() - started
      assert.ok(waited >= 1900 && waited < 8000, `answered after ${waited.toFixed(0)} ms`)
      assert.equal(await metric(enq.admin, 'enqueuer_waiting_for_consumer', name), 0)

      const dq = dequeuer(name, await freePort())
      await waitReady(dq.admin, 15000)
      const served = await send(`${enq.url}/${name}/now`)
      assert.equal(served.status, 200, 'the breaker stayed closed, and the service runs new requests')
      assert.equal(echo.received.filter((r) => r.url.startsWith('/late/')).length, 0, 'the expired requests never reached the service')
      await waitFor(async () => await broker.depth(`${name}_requests.dlq`) === 5, { what: 'five dead letters' })
      const stats = await run(['dlq', 'stats', '--service', name, '--json'])
      assert.equal(stats.code, 0, stats.out)
      assert.deepEqual(JSON.parse(stats.out.trim().split('\n').at(-1)!).byReason, { expired: 5 })
    } finally {
      keda.close()
    }
  })

  it('ENQUEUER_MAX_WAITING: the next request is refused 503 at once and nothing is published; DEQUEUER_MAX_LENGTH: the broker nacks, 503', async () => {
    const bounded = service('maxwait')
    const full = service('maxlen')
    await declare(bounded)
    await declare(full, { DEQUEUER_MAX_LENGTH: '2' })
    const enq = await enqueuer({ ENQUEUER_NO_CONSUMERS: 'wait', ENQUEUER_MAX_WAITING: '3' })
    const held = Array.from({ length: 3 }, () => send(`${enq.url}/${bounded}/x`, { headers: { 'x-relayq-timeout-ms': '4000' } }))
    await waitFor(async () => await broker.depth(`${bounded}_requests`) === 3, { what: 'three published' })
    const refused = await send(`${enq.url}/${bounded}/x`)
    assertRelayqError(refused, 503, 'RQ_ERR_TOO_MANY_WAITING')
    assert.equal(refused.headers['retry-after'], '1')
    assert.ok(refused.ms < 1000, `refused after ${refused.ms.toFixed(0)} ms`)
    assert.equal(await broker.depth(`${bounded}_requests`), 3, 'nothing more published')

    const inQueue = Array.from({ length: 2 }, () => send(`${enq.url}/${full}/y`, { headers: { 'x-relayq-timeout-ms': '4000' } }))
    await waitFor(async () => await broker.depth(`${full}_requests`) === 2, { what: 'two in the bounded queue' })
    const nacked = await send(`${enq.url}/${full}/y`)
    assertRelayqError(nacked, 503, 'RQ_ERR_PUBLISH_NACKED')
    assert.equal(await broker.depth(`${full}_requests`), 2)
    for (const res of await Promise.all([...held, ...inQueue])) assertRelayqError(res, 504, 'RQ_ERR_REPLY_TIMEOUT')
  })

  it('refuse (the default) keeps today\'s answer: 503 RQ_ERR_NO_CONSUMERS, nothing published', async () => {
    const name = service('refuse')
    await declare(name)
    const enq = await enqueuer({})
    const res = await send(`${enq.url}/${name}/x`)
    assertRelayqError(res, 503, 'RQ_ERR_NO_CONSUMERS')
    assert.equal(await broker.depth(`${name}_requests`), 0)
  })

  it('declare is idempotent, fails clearly on other arguments, and refuses bad usage', async () => {
    const name = service('declare')
    const first = await run(['declare', '--service', name, '--json'], { DEQUEUER_MAX_LENGTH: '50' })
    assert.equal(first.code, 0, first.out)
    const doc = JSON.parse(first.out.trim().split('\n').at(-1)!) as { declared: boolean, queues: string[], arguments: Record<string, unknown> }
    assert.equal(doc.declared, true)
    assert.deepEqual(doc.queues.slice(0, 2), [`${name}_requests`, `${name}_requests.dlq`])
    assert.equal(doc.arguments['x-max-length'], 50)
    assert.equal(doc.arguments['x-overflow'], 'reject-publish')
    await broker.publish(`${name}_requests`, Buffer.from('kept'), {})
    const again = await run(['declare', '--service', name], { DEQUEUER_MAX_LENGTH: '50' })
    assert.equal(again.code, 0, again.out)
    assert.equal(await broker.depth(`${name}_requests`), 1, 'a second declare changes nothing')

    const quorum = await run(['declare', '--service', name], { DEQUEUER_MAX_LENGTH: '50', DEQUEUER_QUEUE_TYPE: 'quorum' })
    assert.equal(quorum.code, 1, quorum.out)
    assert.match(quorum.out, /x-queue-type/)
    assert.match(quorum.out, /DEQUEUER_QUEUE_TYPE/)
    const longer = await run(['declare', '--service', name], { DEQUEUER_MAX_LENGTH: '60' })
    assert.equal(longer.code, 1, longer.out)
    assert.match(longer.out, /x-max-length = '?50'?, but relayq declares it with x-max-length = '?60'?/)

    assert.equal((await run(['declare'])).code, 2)
    assert.equal((await run(['declare', '--service', 'amq.nope'])).code, 2)
    assert.equal((await run(['declare', '--service', name], { DEQUEUER_MAX_LENGTH: '-1' })).code, 2)
    assert.equal((await run(['declare', '--service', name], { RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' })).code, 1)
  })
})
