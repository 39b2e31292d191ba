// An AMQP publisher (any principal with write on the default exchange)
// forging relayq's control headers. With RELAYQ_MESSAGE_KEY set, a forged
// `x-relayq-lost-deliveries` does not throttle the service (no careful mode)
// and a forged `x-relayq-attempts` does not shorten a message's retries,
// while relayq's own signed copies keep their counts. Messages without relayq
// headers (ProxyMQ's) are served either way.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { encodeRequest } from '../../src/amqp/wire'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const KEY = 'k'.repeat(16) + '-a-test-key-of-32+-chars'
const CAREFUL = 'a message may have crashed a dequeuer: running suspects alone'

describe('forged control headers from an AMQP publisher', () => {
  let broker: TestBroker
  let svc: Echo
  const services: string[] = []
  const running: TestDequeuer[] = []

  before(async () => {
    broker = await connectBroker()
    svc = await startEcho((req, res) => {
      res.writeHead(req.url.startsWith('/fail') ? 503 : 200)
      res.end('ok')
    })
  })

  after(async () => {
    for (const d of running) await d.close()
    await svc.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  async function dequeuer (env: Record<string, string>): Promise<{ service: string, deq: TestDequeuer }> {
    const service = uniqueService('forged')
    services.push(service)
    const deq = await startTestDequeuer(service, svc.url, {
      DEQUEUER_CONCURRENCY: '10',
      DEQUEUER_MAX_ATTEMPTS: '3',
      DEQUEUER_RETRY_DELAY_MS: '100',
      DEQUEUER_RETRY_MAX_DELAY_MS: '100',
      DEQUEUER_RETRY_STATUSES: '503',
      CIRCUIT_BREAKER_ENABLED: 'false',
      ...env,
    })
    running.push(deq)
    await deq.consuming
    return { service, deq }
  }

  async function publish (service: string, path: string, id: string, forged: Record<string, string>): Promise<void> {
    const m = encodeRequest({ method: 'POST', path, headers: {}, body: Buffer.from(id), correlationId: id, replyTo: null, deadline: Date.now() + 30000, persistent: false, contentType: undefined })
    Object.assign(m.options.headers as Record<string, unknown>, forged)
    await broker.publish(`${service}_requests`, m.content, m.options)
  }

  const calls = (path: string): number => svc.received.filter((r) => r.url === path).length

  it('with RELAYQ_MESSAGE_KEY: forged lost deliveries are ignored, no careful mode; plain messages are served', async () => {
    const { service, deq } = await dequeuer({ RELAYQ_MESSAGE_KEY: KEY })
    for (let i = 0; i < 5; i++) await publish(service, '/forged-suspect', `s${i}`, { 'x-relayq-lost-deliveries': '1' })
    await publish(service, '/plain', 'plain', {})
    await waitFor(() => calls('/forged-suspect') === 5 && calls('/plain') === 1, { what: 'every message served' })
    await waitFor(() => deq.inflight.count === 0)
    assert.equal(deq.logs.has(CAREFUL), false, 'a forged suspect put the dequeuer in careful mode')
    assert.ok(deq.logs.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('ignored relayq control headers')), 'the ignored headers are reported')
  })

  it('with RELAYQ_MESSAGE_KEY: a forged attempt count is ignored; relayq\'s own signed retries keep counting to the limit', async () => {
    const { service, deq } = await dequeuer({ RELAYQ_MESSAGE_KEY: KEY })
    await publish(service, '/fail-forged', 'f1', { 'x-relayq-attempts': '2' })
    await waitFor(async () => (await broker.depth(`${service}_requests.dlq`)) === 1, { what: 'the message to be dead-lettered', timeoutMs: 20000 })
    await waitFor(() => deq.inflight.count === 0)
    assert.equal(calls('/fail-forged'), 3, 'all three attempts ran: the forged count was ignored, the signed retry copies were not')
    const [dead] = await broker.drain(`${service}_requests.dlq`)
    assert.equal(String((dead!.properties.headers as Record<string, unknown>)['x-relayq-attempts']), '3')
  })

  it('without a key (the default, ProxyMQ-compatible): the forged count is trusted and a forged suspect costs one careful episode', async () => {
    const { service, deq } = await dequeuer({})
    await publish(service, '/fail-trusted', 't1', { 'x-relayq-attempts': '2' })
    await waitFor(async () => (await broker.depth(`${service}_requests.dlq`)) === 1, { what: 'the message to be dead-lettered', timeoutMs: 20000 })
    assert.equal(calls('/fail-trusted'), 1)
    await publish(service, '/trusted-suspect', 'u1', { 'x-relayq-lost-deliveries': '1' })
    await waitFor(() => calls('/trusted-suspect') === 1)
    await waitFor(() => deq.logs.has(CAREFUL) && !deq.isolation.active, { what: 'careful mode to start and end' })
  })
})
