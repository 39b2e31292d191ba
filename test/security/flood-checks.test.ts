// Issue 21 item 6: without ENQUEUER_SERVICES, requests to random service names
// made one broker queue check each (every one a channel exception on the
// broker) and pushed real services out of the queue checker, which then
// answered them 503. A bounded flood here: broker checks stay within the rate
// limit for new names, and a healthy service served alongside gets no 503.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { Agent } from 'undici'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { BrokerTraffic } from '../helpers/broker-traffic'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

const FLOOD_REQUESTS = 2000
const FLOOD_CONCURRENCY = 32
const RATE = 100

describe('a flood of random service names', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  let agent: Agent
  const healthy = uniqueService('flood-ok')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
    deq = await startTestDequeuer(healthy, echo.url)
    await deq.consuming
    // A short TTL: the healthy service's entry goes stale and is refreshed many times during the flood.
    enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '300', ENQUEUER_NEW_SERVICE_CHECKS_PER_SECOND: String(RATE), ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false' })
    agent = new Agent({ connections: FLOOD_CONCURRENCY + 4 })
  })

  after(async () => {
    await agent.close()
    await enq.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(healthy)
    await broker.close()
  })

  it(`${FLOOD_REQUESTS} requests to random names: broker checks bounded by the rate, the healthy service never refused`, async (t) => {
    assert.equal((await send(`${enq.url}/${healthy}/warm`)).status, 200)
    const traffic = new BrokerTraffic(enq.context.connection.model!)
    const codes = new Map<string, number>()
    const healthyAnswers = new Map<number, number>()
    let sent = 0
    let flooding = true
    const started = performance.now()
    try {
      const flood = Array.from({ length: FLOOD_CONCURRENCY }, async () => {
        while (sent < FLOOD_REQUESTS) {
          sent++
          const res = await send(`${enq.url}/rnd-${randomBytes(6).toString('hex')}/x`, { dispatcher: agent })
          const code = String(res.headers['x-relayq-error'] ?? res.status)
          codes.set(code, (codes.get(code) ?? 0) + 1)
        }
      })
      const served = Array.from({ length: 2 }, async () => {
        while (flooding) {
          const res = await send(`${enq.url}/${healthy}/during`, { dispatcher: agent })
          healthyAnswers.set(res.status, (healthyAnswers.get(res.status) ?? 0) + 1)
        }
      })
      await Promise.all(flood)
      flooding = false
      await Promise.all(served)
    } finally {
      traffic.stop()
    }
    const seconds = (performance.now() - started) / 1000
    const checks = traffic.methods.filter((m) => m.name === 'QueueDeclare')
    const randomChecks = checks.filter((m) => m.queue !== `${healthy}_requests`).length
    const healthyRefused = [...healthyAnswers].filter(([status]) => status !== 200).reduce((n, [, c]) => n + c, 0)
    t.diagnostic(`${seconds.toFixed(1)} s; broker checks of random names: ${randomChecks}; answers to random names: ${JSON.stringify(Object.fromEntries(codes))}; healthy service: ${JSON.stringify(Object.fromEntries(healthyAnswers))}`)
    assert.equal(traffic.publishes.filter((p) => p.routingKey !== `${healthy}_requests`).length, 0)
    // One second's burst, then the rate (plus the checks in flight when the clock was read).
    assert.ok(randomChecks <= RATE + RATE * seconds + FLOOD_CONCURRENCY, `${randomChecks} broker checks in ${seconds.toFixed(1)} s`)
    assert.ok((codes.get('RQ_ERR_QUEUE_NOT_FOUND') ?? 0) > 0, 'names checked get 404')
    for (const code of codes.keys()) assert.ok(code === 'RQ_ERR_QUEUE_NOT_FOUND' || code === 'RQ_ERR_OVERLOADED', code)
    assert.ok((healthyAnswers.get(200) ?? 0) > 0)
    assert.equal(healthyRefused, 0, 'the healthy service was refused during the flood')
  })
})
