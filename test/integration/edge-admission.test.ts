// What the enqueuer decides before publishing, against the real broker: the
// queue check's age, what a missing consumer does to the service breaker.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Agent } from 'undici'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

describe('edge admission', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []
  const unique = (prefix: string): string => {
    const s = uniqueService(prefix)
    services.push(s)
    return s
  }

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
  })

  after(async () => {
    await echo.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  it('the first request after the last consumer left (idle past the TTL) gets 503 NO_CONSUMERS, not a 504 after the reply timeout', async () => {
    const service = unique('gone')
    const enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '300', ENQUEUER_REPLY_TIMEOUT: '20', ASYNC_JOBS: 'false' })
    const deq = await startTestDequeuer(service, echo.url)
    try {
      await deq.consuming
      assert.equal((await send(`${enq.url}/${service}/warm`)).status, 200)
      await deq.close()
      await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 0, { what: 'the consumer to go' })
      // Time is the subject: the cached "1 consumer" must be older than the TTL.
      await sleep(400)
      const res = await send(`${enq.url}/${service}/after-idle`, { method: 'POST', body: 'x' })
      assertRelayqError(res, 503, 'RQ_ERR_NO_CONSUMERS')
      assert.equal(await broker.depth(`${service}_requests`), 0, 'nothing was published to a queue nobody consumes')
    } finally {
      await deq.close()
      await enq.close()
    }
  })

  it('a queue without a consumer is not a breaker failure: many NO_CONSUMERS answers, then the first request after the consumer arrives is served', async () => {
    const service = unique('late')
    // The queue as a dequeuer declares it, then no consumer on it.
    const first = await startTestDequeuer(service, echo.url)
    await first.consuming
    await first.close()
    await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 0, { what: 'the consumer to go' })
    const enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '0', ENQUEUER_BREAKER_THRESHOLD: '3', ENQUEUER_BREAKER_COOLDOWN_MS: '60000', ASYNC_JOBS: 'false' })
    let deq: Awaited<ReturnType<typeof startTestDequeuer>> | null = null
    try {
      // Requests arriving before the dequeuer consumes (start-up, a reconnect).
      for (let i = 0; i < 10; i++) assertRelayqError(await send(`${enq.url}/${service}/early-${i}`), 503, 'RQ_ERR_NO_CONSUMERS')
      deq = await startTestDequeuer(service, echo.url)
      await deq.consuming
      const res = await send(`${enq.url}/${service}/first`, { method: 'POST', body: 'hello' })
      assert.equal(res.status, 200, `${res.status} ${String(res.headers['x-relayq-error'])}: the breaker must not have opened`)
      const metrics = (await send(`${enq.url}/metrics`)).body.toString()
      assert.doesNotMatch(metrics, /enqueuer_circuit_breaker_transitions_total\{[^}]*state="open"\}/)
    } finally {
      await deq?.close()
      await enq.close()
    }
  })

  it('a silent service holds at most its share of ENQUEUER_MAX_INFLIGHT: the rest of its requests get 503 SERVICE_OVERLOADED, another service is served', async () => {
    const silent = unique('silent')
    const healthy = unique('served')
    const ch = await broker.channel()
    // A consumer that takes every request and never answers.
    await ch.assertQueue(`${silent}_requests`, { durable: false })
    await ch.consume(`${silent}_requests`, () => {}, { noAck: true })
    const deq = await startTestDequeuer(healthy, echo.url)
    const enq = await startTestEnqueuer({ ENQUEUER_MAX_INFLIGHT: '10', ENQUEUER_REPLY_TIMEOUT: '3', ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false' })
    const agent = new Agent({ connections: 30 })
    try {
      await deq.consuming
      const stuck = Array.from({ length: 8 }, (_, i) => send(`${enq.url}/${silent}/s-${i}`, { dispatcher: agent }))
      await waitFor(() => enq.admission.inflightOf(silent) === 5, { what: 'the silent service to hold its share' })
      const served = await Promise.all(Array.from({ length: 5 }, (_, i) => send(`${enq.url}/${healthy}/h-${i}`, { dispatcher: agent })))
      assert.deepEqual(served.map((a) => a.status), [200, 200, 200, 200, 200], served.map((a) => String(a.headers['x-relayq-error'])).join(' '))
      const silentAnswers = await Promise.all(stuck)
      const refused = silentAnswers.filter((a) => a.headers['x-relayq-error'] === 'RQ_ERR_SERVICE_OVERLOADED')
      assert.equal(refused.length, 3)
      for (const r of refused) {
        assertRelayqError(r, 503, 'RQ_ERR_SERVICE_OVERLOADED')
        assert.equal(r.headers['retry-after'], '1')
      }
      assert.equal(silentAnswers.filter((a) => a.status === 504).length, 5)
      assert.equal(enq.admission.inflight, 0)
    } finally {
      await agent.close()
      await ch.close()
      await deq.close()
      await enq.close()
    }
  })

  it('a failing service (2 in 3): the dequeuer\'s breaker pauses its consumer, the enqueuer never answers CIRCUIT_OPEN for it', async () => {
    const service = unique('half')
    let n = 0
    const flaky = await startEcho((req, res) => {
      n++
      // Two in three fail: enough for the dequeuer's breaker (50 %) to open whatever the order of its window.
      res.writeHead(n % 3 === 0 ? 200 : 503)
      res.end(req.url)
    })
    const deq = await startTestDequeuer(service, flaky.url, { CIRCUIT_BREAKER_VOLUME: '4', CIRCUIT_BREAKER_ERROR_PERCENT: '50', CIRCUIT_BREAKER_RESET_MS: '500', DEQUEUER_MAX_ATTEMPTS: '1' })
    const enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '50', ENQUEUER_REPLY_TIMEOUT: '10', ENQUEUER_BREAKER_THRESHOLD: '2', ASYNC_JOBS: 'false' })
    const codes = new Map<string, number>()
    try {
      await deq.consuming
      let pausedSeen = false
      let servedAfter = 0
      const until = Date.now() + 20_000
      // Until the dequeuer's breaker has opened (consumer cancelled) and its consumer is back serving.
      for (let i = 0; Date.now() < until && servedAfter < 10; i++) {
        const res = await send(`${enq.url}/${service}/r${i}`)
        const code = String(res.headers['x-relayq-error'] ?? res.status)
        codes.set(code, (codes.get(code) ?? 0) + 1)
        if (code === 'RQ_ERR_NO_CONSUMERS') pausedSeen = true
        else if (pausedSeen && (code === '200' || code === '503')) servedAfter++
        // Pacing, so the refusals spread over the dequeuer's reset time (not synchronisation).
        if (code.startsWith('RQ_ERR')) await sleep(20)
      }
      const metrics = (await send(`${deq.adminUrl}/metrics`)).body.toString()
      assert.match(metrics, /dequeuer_circuit_breaker_transitions_total\{service="[^"]+",state="open"\} [1-9]/, 'the dequeuer\'s breaker opened')
      assert.ok(pausedSeen, `the consumer pause was seen: ${JSON.stringify(Object.fromEntries(codes))}`)
      assert.equal(servedAfter, 10, `the service answers again once its consumer is back: ${JSON.stringify(Object.fromEntries(codes))}`)
      assert.equal(codes.get('RQ_ERR_CIRCUIT_OPEN') ?? 0, 0, JSON.stringify(Object.fromEntries(codes)))
    } finally {
      await deq.close()
      await enq.close()
      await flaky.close()
    }
  })
})
