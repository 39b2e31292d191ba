// Batch mode: queued requests reach the service as one call in ProxyMQ's
// batch format, and each client gets its own item of the answer.
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import { encodeRequest } from '../../src/amqp/wire'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo, type Received } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

interface Item { correlation_id: string, method: string, path: string, headers: Record<string, string>, body: string, body_encoding?: string }

describe('batch mode', () => {
  let broker: TestBroker
  let svc: Echo
  let enq: TestEnqueuer
  const answerEach = (items: Item[]): unknown => items.map((i) => ({ correlation_id: i.correlation_id, status: 'success', status_code: 200, headers: { 'x-item': i.path }, content: `done:${Buffer.from(i.body, i.body_encoding === 'base64' ? 'base64' : 'utf8').toString('hex')}` }))
  let answer = answerEach
  let failWith = 0
  let holdMs = 0
  let concurrent = 0
  let peakConcurrent = 0
  const calls: Item[][] = []
  const services: string[] = []
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    broker = await connectBroker()
    svc = await startEcho((req: Received, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ batch_size: 5 }))
        return
      }
      const items = (JSON.parse(req.body.toString()) as { requests: Item[] }).requests
      calls.push(items)
      if (failWith !== 0) {
        res.writeHead(failWith)
        res.end('batch failed')
        return
      }
      concurrent++
      peakConcurrent = Math.max(peakConcurrent, concurrent)
      setTimeout(() => {
        concurrent--
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(answer(items)))
      }, holdMs)
    })
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '20', ENQUEUER_BREAKER_ENABLED: 'false' })
  })
  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()!()
    calls.length = 0
    answer = answerEach
    failWith = 0
    holdMs = 0
    peakConcurrent = 0
  })
  after(async () => {
    await enq.close()
    await svc.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  async function dequeuer (env: Record<string, string> = {}): Promise<string> {
    const service = uniqueService('batch')
    services.push(service)
    const deq = await startTestDequeuer(service, svc.url, {
      BATCH_MODE: 'true',
      BATCH_DOWNSTREAM_URL: `${svc.url}/batch`,
      BATCH_WINDOW_MS: '200',
      DEQUEUER_MAX_ATTEMPTS: '1',
      CIRCUIT_BREAKER_ENABLED: 'false',
      ...env,
    })
    await deq.consuming
    cleanup.push(() => deq.close())
    return service
  }

  it('as many batch calls run at once as the prefetch can fill', async () => {
    const service = await dequeuer({ BATCH_SIZE: '2', DEQUEUER_CONCURRENCY: '24' })
    holdMs = 500
    const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => send(`${enq.url}/${service}/item/${i}`, { method: 'POST', body: String(i) })))
    for (const r of answers) assert.equal(r.status, 200)
    assert.equal(calls.length, 12)
    assert.equal(peakConcurrent, 12, 'every full batch had a socket at once')
  })

  it('five concurrent requests reach the service as one call; each client gets its own answer', async () => {
    const service = await dequeuer()
    const bodies = ['a', 'b', 'c', 'd', Buffer.from([0xff, 0x00])]
    const answers = await Promise.all(bodies.map((b, i) => send(`${enq.url}/${service}/item/${i}`, { method: 'POST', body: b })))
    assert.equal(calls.length, 1, `the service got ${calls.length} calls`)
    assert.equal(calls[0]!.length, 5)
    assert.ok(calls[0]!.some((i) => i.body_encoding === 'base64' && i.body === Buffer.from([0xff, 0x00]).toString('base64')), 'a non-UTF-8 body travels base64, flagged')
    answers.forEach((r, i) => {
      assert.equal(r.status, 200)
      assert.equal(r.body.toString(), `done:${Buffer.from(bodies[i]!).toString('hex')}`)
      assert.equal(r.headers['x-item'], `/item/${i}`)
    })
  })

  it('asks the service its batch size when BATCH_SIZE is unset, and BATCH_SIZE wins when set', async () => {
    const asked = await dequeuer()
    await Promise.all(Array.from({ length: 7 }, (_, i) => send(`${enq.url}/${asked}/x`, { method: 'POST', body: String(i) })))
    assert.deepEqual(calls.map((c) => c.length).sort(), [2, 5])
    calls.length = 0
    const fixed = await dequeuer({ BATCH_SIZE: '3' })
    await Promise.all(Array.from({ length: 6 }, (_, i) => send(`${enq.url}/${fixed}/x`, { method: 'POST', body: String(i) })))
    assert.deepEqual(calls.map((c) => c.length), [3, 3])
  })

  it('an item missing from the answer fails alone (dead-lettered, its client told); the others are served', async () => {
    const service = await dequeuer()
    answer = (items) => items.filter((i) => i.body !== 'lost').map((i) => ({ correlation_id: i.correlation_id, status: 'success', status_code: 200, content: `ok:${i.body}` }))
    const answers = await Promise.all(['x', 'lost', 'y'].map((b) => send(`${enq.url}/${service}/p`, { method: 'POST', body: b })))
    assert.equal(answers[0]!.body.toString(), 'ok:x')
    assert.equal(answers[2]!.body.toString(), 'ok:y')
    assert.equal(answers[1]!.status, 502)
    assert.equal(answers[1]!.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length === 1 ? m : null })
    assert.equal(dlq[0]!.content.toString(), 'lost')
  })

  it('a failed batch call is a failed attempt for every message in it', async () => {
    const service = await dequeuer({ DEQUEUER_MAX_ATTEMPTS: '2', DEQUEUER_RETRY_DELAY_MS: '100' })
    failWith = 500
    const answers = await Promise.all(['1', '2'].map((b) => send(`${enq.url}/${service}/f`, { method: 'POST', body: b })))
    for (const a of answers) {
      assert.equal(a.status, 502)
      assert.equal(a.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_UNAVAILABLE')
    }
    assert.equal(calls.flat().length, 4, 'two attempts for each of the two messages')
    await waitFor(async () => (await broker.depth(`${service}_requests.dlq`)) === 2)
  })

  it('a suspect runs alone as a batch of one, and careful mode ends after it (batch mode never left it)', async () => {
    const service = uniqueService('batch')
    services.push(service)
    const deq = await startTestDequeuer(service, svc.url, { BATCH_MODE: 'true', BATCH_DOWNSTREAM_URL: `${svc.url}/batch`, BATCH_WINDOW_MS: '50', BATCH_SIZE: '5', DEQUEUER_CONCURRENCY: '10', CIRCUIT_BREAKER_ENABLED: 'false' })
    cleanup.push(() => deq.close())
    await deq.consuming
    const suspect = encodeRequest({ method: 'POST', path: '/s', headers: {}, body: Buffer.from('suspect'), correlationId: 'suspect-1', replyTo: null, deadline: Date.now() + 20000, persistent: false, contentType: undefined })
    ;(suspect.options.headers as Record<string, unknown>)['x-relayq-lost-deliveries'] = '1'
    await broker.publish(`${service}_requests`, suspect.content, suspect.options)
    await waitFor(() => calls.some((c) => c.some((i) => i.body === 'suspect')), { what: 'the suspect to be called' })
    assert.equal(calls.find((c) => c.some((i) => i.body === 'suspect'))!.length, 1, 'the suspect ran alone')
    await waitFor(() => !deq.isolation.active, { timeoutMs: 5000, what: 'careful mode to end' })
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => send(`${enq.url}/${service}/n`, { method: 'POST', body: `n${i}` })))
    assert.deepEqual(answers.map((a) => a.status), answers.map(() => 200))
    assert.ok(calls.some((c) => c.length > 1), 'batches of more than one again')
    assert.match((await send(`${deq.adminUrl}/metrics`)).body.toString(), /dequeuer_prefetch\{service="[^"]+"\} 10/)
  })

  it('an item status outside 200-599 (100, 101, 600) is a 502 for that item alone; 204 and 304 carry no body or length', async () => {
    const service = await dequeuer({ BATCH_SIZE: '6', BATCH_WINDOW_MS: '300' })
    answer = (items) => items.map((i) => ({ correlation_id: i.correlation_id, status: 'success', status_code: Number(i.body), headers: { 'content-length': '5', 'x-item': i.body }, content: 'hello' }))
    const statuses = ['100', '101', '600', '200']
    const answers = await Promise.all(statuses.map((b) => send(`${enq.url}/${service}/s`, { method: 'POST', body: b })))
    assert.deepEqual(answers.map((a) => a.status), [502, 502, 502, 200])
    for (const a of answers.slice(0, 3)) assert.equal(a.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_STATUS')
    // 204 and 304, read as the dequeuer publishes them (HEAD keeps a content-length otherwise).
    const ch = await broker.channel()
    const { queue: replies } = await ch.assertQueue('', { exclusive: true })
    for (const status of ['204', '304', '200']) {
      const req = encodeRequest({ method: 'HEAD', path: '/h', headers: {}, body: Buffer.from(status), correlationId: `c-${status}`, replyTo: replies, deadline: Date.now() + 20000, persistent: false, contentType: undefined })
      await broker.publish(`${service}_requests`, req.content, req.options)
    }
    const got = new Map<string, { headers: Record<string, unknown>, body: Buffer }>()
    await waitFor(async () => {
      const m = await ch.get(replies, { noAck: true })
      if (m !== false) got.set(m.properties.correlationId as string, { headers: m.properties.headers as Record<string, unknown>, body: m.content })
      return got.size === 3
    }, { what: 'three replies' })
    for (const status of ['204', '304']) {
      const r = got.get(`c-${status}`)!
      assert.equal(String(r.headers['x-status-code']), status)
      assert.equal(r.body.length, 0, `${status} carries no body`)
      assert.equal(r.headers['content-length'], undefined, `${status} carries no content-length`)
    }
    assert.equal(got.get('c-200')!.headers['content-length'], '5', 'HEAD keeps the length of other statuses')
    await ch.close()
  })
})
