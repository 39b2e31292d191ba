// S1, S2, S13: no URL reaches a queue it should not, and hostile names cannot
// grow the metrics. 10,000+ requests with hostile and random service names go
// to two enqueuers, one without and one with ENQUEUER_SERVICES. Proof of
// "nothing published" is threefold: the AMQP frames each enqueuer sent (a
// wire-level spy), the queues the broker holds (rabbitmqctl), and two real
// services that would record anything delivered to them.
import assert from 'node:assert/strict'
import { randomBytes, randomInt } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { Agent } from 'undici'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { BrokerTraffic } from '../helpers/broker-traffic'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { listQueues } from '../helpers/rabbitmqctl'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

const REFUSALS = new Set(['RQ_ERR_INVALID_SERVICE', 'RQ_ERR_INVALID_PATH', 'RQ_ERR_QUEUE_NOT_FOUND', 'RQ_ERR_SERVICE_NOT_ALLOWED'])

/** Names a careless bridge would map onto queues that are not request queues. */
function hostileNames (own: string): string[] {
  return [
    'amq.rabbitmq.reply-to', 'amq.rabbitmq.reply-to.x', 'amq.rabbitmq.reply-to.g1h2AA%3D%3D', 'amq.gen-JzTY20BRgKO', 'amq.direct', 'amq.default',
    `${own}_requests`, `${own}_requests.dlq`, `${own}_requests.retry.1000`, 'x_requests.dlq', 'relayq_results', 'relayq_results.0123456789ab', 'relayq.dlx',
    '..', '.', '...', '%2e%2e', '%2E', 'a'.repeat(101), 'a'.repeat(100), 'a'.repeat(5000),
    's%C3%A9rvice', '%E2%80%A8', '%F0%9F%92%A5', 'caf%C3%A9_requests', '%2F', 'a%2Fb', '%2Fetc%2Fpasswd', '%00', 'x%00y', '%0d%0aX-Injected:%201',
    '%20', 'x%20y', '-x', '_x', '*', '~', '%25', '%252F', `${own}%2F..%2Fadmin`, `${own};x`, `${own}@evil`, 'x:y', '(', '$', '!',
  ]
}

const VALID_FIRST = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const VALID_REST = VALID_FIRST + '_.-'
const PIECES = ['%2F', '%2f', '%00', '%0A', '%20', '%25', '%3F', '%23', '..', '.', '*', '~', '!', '$', '&', "'", '(', ')', '+', ',', ';', '=', ':', '@',
  '%C3%A9', '%E2%80%A8', '%F0%9F%92%A5', 'amq.', '-', '_', 'A', 'z', '0']

/** Valid-looking names (404: no such queue) and garbage (400), half and half. Every valid one starts with `rq`. */
function randomName (): string {
  if (randomInt(2) === 0) {
    let s = 'rq' + VALID_FIRST[randomInt(VALID_FIRST.length)]
    const len = randomInt(0, 98)
    for (let i = 0; i < len; i++) s += VALID_REST[randomInt(VALID_REST.length)]
    return s
  }
  let s = ''
  const n = randomInt(1, 9)
  for (let i = 0; i < n; i++) s += PIECES[randomInt(PIECES.length)]
  return s
}

interface Outcome { name: string, status: number, code: string | undefined, body: string }

/** Sends GET /{name}/x for every name, `concurrency` at a time, through raw paths (no URL normalisation). */
async function sweep (agent: Agent, origin: string, names: string[], concurrency: number): Promise<Outcome[]> {
  const out: Outcome[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++]!
      const res = await agent.request({ origin, path: `/${name}/x`, method: 'GET' })
      const body = await res.body.text()
      const code = res.headers['x-relayq-error']
      out.push({ name, status: res.statusCode, code: typeof code === 'string' ? code : undefined, body })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return out
}

function assertAllRefused (outcomes: Outcome[]): void {
  const wrong = outcomes.filter((o) => (o.status !== 400 && o.status !== 404) || o.code === undefined || !REFUSALS.has(o.code))
  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of ${outcomes.length} not refused with 400/404`)
  for (const o of outcomes) {
    const body = JSON.parse(o.body) as { code: string }
    assert.equal(body.code, o.code)
  }
}

/** Prometheus text: series lines only (no comments). */
function series (text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
}

function serviceLabels (text: string): Set<string> {
  return new Set([...text.matchAll(/service="([^"]*)"/g)].map((m) => m[1]!))
}

describe('S1/S2/S13: hostile and random service names', () => {
  let broker: TestBroker
  let echoA: Echo
  let echoB: Echo
  let deqA: TestDequeuer
  let deqB: TestDequeuer
  let open: TestEnqueuer
  let allowList: TestEnqueuer
  let agent: Agent
  let queuesBefore: Set<string>
  let baselineSeries: number
  const tenantA = uniqueService('tenant-a')
  const tenantB = uniqueService('tenant-b')
  const sent = new Set<string>()

  before(async () => {
    broker = await connectBroker()
    echoA = await startEcho()
    echoB = await startEcho()
    // Both tenants declare their full topology (request, dead-letter and retry queues): every one a target.
    deqA = await startTestDequeuer(tenantA, echoA.url, { DEQUEUER_RETRY_DELAY_MS: '1000' })
    deqB = await startTestDequeuer(tenantB, echoB.url)
    await Promise.all([deqA.consuming, deqB.consuming])
    // No rate limit on checks of new names here: this file is about where names lead (flood-checks.test.ts covers the limit).
    open = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false', ENQUEUER_NEW_SERVICE_CHECKS_PER_SECOND: '0' })
    allowList = await startTestEnqueuer({ ENQUEUER_SERVICES: tenantA, ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_JOBS: 'false' })
    agent = new Agent({ connections: 64, keepAliveTimeout: 10000 })
    baselineSeries = series((await send(`${allowList.url}/metrics`)).body.toString()).length
    queuesBefore = await listQueues()
    assert.ok(queuesBefore.has(`${tenantA}_requests.dlq`) && queuesBefore.has(`${tenantB}_requests`), 'the targets exist')
  })

  after(async () => {
    await agent.close()
    await open.close()
    await allowList.close()
    await deqA.close()
    await deqB.close()
    await echoA.close()
    await echoB.close()
    await broker.deleteService(tenantA)
    await broker.deleteService(tenantB)
    await broker.close()
  })

  it('without ENQUEUER_SERVICES: 2,000+ hostile and random names get 400/404; only passive checks of *_requests queues reach the broker, nothing is published', async () => {
    const traffic = new BrokerTraffic(open.context.connection.model!)
    try {
      const names = [...hostileNames(tenantA), ...Array.from({ length: 2000 }, randomName)]
      names.forEach((n) => sent.add(n))
      // Under the queue checker's limit of 32 first-time checks in flight (beyond it: 503, see the report).
      const outcomes = await sweep(agent, open.url, names, 16)
      assert.equal(outcomes.length, names.length)
      assertAllRefused(outcomes)
      const byName = new Map(outcomes.map((o) => [o.name, o.code]))
      for (const reserved of ['amq.rabbitmq.reply-to', 'amq.rabbitmq.reply-to.x', 'amq.gen-JzTY20BRgKO', '..', 'a'.repeat(101), 's%C3%A9rvice', '%2F', 'a%2Fb']) {
        assert.equal(byName.get(reserved), 'RQ_ERR_INVALID_SERVICE', reserved)
      }
      // Valid names that look like other queues map onto `{name}_requests`, which does not exist.
      for (const lookalike of [`${tenantA}_requests.dlq`, `${tenantA}_requests.retry.1000`, 'relayq_results', 'relayq.dlx', 'a'.repeat(100)]) {
        assert.equal(byName.get(lookalike), 'RQ_ERR_QUEUE_NOT_FOUND', lookalike)
      }
      assert.deepEqual(traffic.publishes, [])
      const declares = traffic.methods.filter((m) => m.name === 'QueueDeclare')
      assert.ok(declares.length > 0, 'valid names are checked with the broker')
      for (const d of declares) {
        assert.equal(d.passive, true, `a non-passive declare of ${d.queue}`)
        assert.match(d.queue!, /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}_requests$/)
      }
      const allowed = new Set(['ChannelOpen', 'QueueDeclare', 'ChannelClose', 'ChannelCloseOk'])
      assert.deepEqual(traffic.methods.filter((m) => !allowed.has(m.name)), [])
      assert.equal(echoA.received.length + echoB.received.length, 0)
    } finally {
      traffic.stop()
    }
  })

  it('with ENQUEUER_SERVICES: 8,000+ names, the other tenant\'s queue included, get 400/404 without a single frame to the broker', async () => {
    const traffic = new BrokerTraffic(allowList.context.connection.model!)
    try {
      const names = [...hostileNames(tenantA), tenantB, `${tenantB}_requests`, tenantB.toUpperCase(), ...Array.from({ length: 8000 }, randomName)]
      names.forEach((n) => sent.add(n))
      const outcomes = await sweep(agent, allowList.url, names, 64)
      assertAllRefused(outcomes)
      const other = outcomes.find((o) => o.name === tenantB)!
      assert.equal(other.status, 404)
      assert.equal(other.code, 'RQ_ERR_SERVICE_NOT_ALLOWED')
      assert.equal(outcomes.filter((o) => o.code === 'RQ_ERR_QUEUE_NOT_FOUND').length, 0, 'no name outside the list is looked up')
      assert.deepEqual([...traffic.methods], [])
      assert.deepEqual([...traffic.publishes], [])
      assert.equal(echoB.received.length, 0)
      assert.equal(await broker.depth(`${tenantB}_requests`), 0)
      // The spy sees what an allowed request does, so the silence above means something.
      assert.equal((await send(`${allowList.url}/${tenantA}/ok`)).status, 200)
      assert.deepEqual(traffic.publishes.map((p) => p.routingKey), [`${tenantA}_requests`])
      assert.equal(echoA.received.length, 1)
    } finally {
      traffic.stop()
    }
  })

  it('the broker holds no queue it did not hold before, and no dead-letter or retry queue took a message', async () => {
    const now = await listQueues()
    const decode = (s: string): string => { try { return decodeURIComponent(s) } catch { return s } }
    const derived = new Set([...sent].flatMap((n) => [n, `${n}_requests`, decode(n), `${decode(n)}_requests`]))
    // Other test files may run against the same broker; none of their queues can come from our names.
    const fresh = [...now].filter((q) => !queuesBefore.has(q))
    assert.deepEqual(fresh.filter((q) => derived.has(q)), [])
    assert.deepEqual(fresh.filter((q) => !q.startsWith('t-') && !q.startsWith('relayq_results.')), [], 'only other tests\' own queues may appear meanwhile')
    assert.equal(await broker.depth(`${tenantA}_requests.dlq`), 0)
    assert.equal(await broker.depth(`${tenantB}_requests.dlq`), 0)
    assert.equal(await broker.depth(`${tenantA}_requests`), 0)
    assert.equal(await broker.depth(`${tenantA}_requests.retry.1000`), 0)
  })

  it('S13: the names do not grow the metrics: only allow-listed services, _invalid and _unknown are labels, and 1,000 more names add no series', async () => {
    for (const enq of [open, allowList]) {
      const text = (await send(`${enq.url}/metrics`)).body.toString()
      const labels = serviceLabels(text)
      const expected = enq === open ? ['_invalid', '_unknown'] : ['_invalid', '_unknown', tenantA]
      assert.deepEqual([...labels].filter((l) => !expected.includes(l)), [], `unexpected service labels ${[...labels].join(', ')}`)
      for (const name of sent) if (name.length >= 12 && name.startsWith('rq')) assert.ok(!text.includes(name), `${name} in /metrics`)
    }
    const before = series((await send(`${allowList.url}/metrics`)).body.toString()).length
    // Three label values (the allowed service, _invalid, _unknown), each with at most ~50 series (two histograms, counters by code).
    assert.ok(before - baselineSeries <= 3 * 50, `${before - baselineSeries} series added by 10,000 requests`)
    const outcomes = await sweep(agent, allowList.url, Array.from({ length: 1000 }, () => `rq${randomBytes(8).toString('hex')}`), 64)
    assertAllRefused(outcomes)
    const afterText = (await send(`${allowList.url}/metrics`)).body.toString()
    assert.equal(series(afterText).length, before, 'series added by 1,000 new names')
  })
})
