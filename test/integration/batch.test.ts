// Batch mode: queued requests reach the service as one call in ProxyMQ's
// batch format, and each client gets its own item of the answer.
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
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
  let answer: (items: Item[]) => unknown = (items) => items.map((i) => ({ correlation_id: i.correlation_id, status: 'success', status_code: 200, headers: { 'x-item': i.path }, content: `done:${Buffer.from(i.body, i.body_encoding === 'base64' ? 'base64' : 'utf8').toString('hex')}` }))
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
})
