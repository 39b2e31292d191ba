// S18: job ids cannot be guessed, and a reply reaches only the request it
// answers. 10,000 ids from the code that makes them (the job store path),
// plus a sample through HTTP; then a responder of our own that sends stray,
// duplicate and id-less replies to requests waiting on one channel.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { ConsumeMessage } from 'amqplib'
import { Agent } from 'undici'
import { loadConfig } from '../../src/config/load'
import { Jobs } from '../../src/enqueuer/jobs/jobs'
import { MemoryJobStore } from '../../src/enqueuer/jobs/memory-store'
import { ResponseSender } from '../../src/http/send'
import { createLogger } from '../../src/log'
import { createEnqueuerMetrics } from '../../src/metrics/enqueuer'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoBody, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** Each random hex position of the ids takes each value about equally often (a counter or a clock would not). */
function assertUniformNibbles (ids: string[]): void {
  const hex = ids.map((id) => id.replaceAll('-', ''))
  // Positions 12 (version) and 16 (variant) are fixed or 2-bit; the other 30 carry 4 random bits each.
  for (let pos = 0; pos < 32; pos++) {
    if (pos === 12 || pos === 16) continue
    const counts = new Array<number>(16).fill(0)
    for (const h of hex) counts[parseInt(h[pos]!, 16)]!++
    const expected = ids.length / 16
    // 6 standard deviations either way: a random generator never fails this, a skewed one does.
    const sd = Math.sqrt(ids.length * (1 / 16) * (15 / 16))
    for (const c of counts) assert.ok(Math.abs(c - expected) < 6 * sd, `hex position ${pos}: counts ${counts.join(',')}`)
  }
}

describe('S18: ids and replies', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  const service = uniqueService('ids')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoBody)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    enq = await startTestEnqueuer({})
  })

  after(async () => {
    const results = enq.context.jobs?.resultsQueue
    await enq.close()
    if (results !== undefined) await broker.channel().then(async (ch) => { await ch.deleteQueue(results); await ch.close() }).catch(() => {})
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('10,000 job ids from the job store path: no collision, all UUIDv4, every random position uniform', async () => {
    const config = loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer!.async
    const metrics = createEnqueuerMetrics(null, 1, { inflight: () => 0, pendingReplies: () => 0, brokerUp: () => true, brokerBlocked: () => false })
    const jobs = new Jobs(config, new MemoryJobStore(20000), createLogger('error'), metrics, '000000000000', new ResponseSender({ sendTimeoutMs: 1000, maxBufferedBytes: 0 }))
    const ids: string[] = []
    for (let i = 0; i < 10000; i++) ids.push((await jobs.create({ service: 's', token: undefined, callbackUrl: undefined, caller: 'c' })).job_id)
    assert.equal(new Set(ids).size, 10000)
    for (const id of ids) assert.match(id, UUID_V4)
    assertUniformNibbles(ids)
  })

  it('through HTTP: 300 jobs and 300 requests get distinct UUIDv4 ids, none reused between them', async () => {
    const agent = new Agent({ connections: 32 })
    try {
      const jobs = await Promise.all(Array.from({ length: 300 }, () => send(`${enq.url}/${service}/job`, { headers: { prefer: 'respond-async' }, dispatcher: agent })))
      const sync = await Promise.all(Array.from({ length: 300 }, () => send(`${enq.url}/${service}/sync`, { dispatcher: agent })))
      const jobIds = jobs.map((r) => { assert.equal(r.status, 202); return r.json<{ job_id: string }>().job_id })
      const correlation = sync.map((r) => { assert.equal(r.status, 200); return String(r.headers['x-correlation-id']) })
      for (const id of [...jobIds, ...correlation]) assert.match(id, UUID_V4)
      assert.equal(new Set([...jobIds, ...correlation]).size, 600)
      jobs.forEach((r, i) => assert.equal(r.headers['x-correlation-id'], jobIds[i]))
    } finally {
      await agent.close()
    }
  })

  it('a reply for no waiting request (unknown id, no id, a duplicate) is dropped and counted, never given to another waiting request', async () => {
    // One publishing channel, so both requests wait in the same reply table.
    const single = await startTestEnqueuer({ ENQUEUER_POOL_SIZE: '1', ASYNC_JOBS: 'false' })
    const rogue = uniqueService('rogue')
    const ch = await broker.channel()
    try {
      const q = `${rogue}_requests`
      await ch.assertQueue(q, { durable: false })
      const held: ConsumeMessage[] = []
      await ch.consume(q, (m) => { if (m !== null) held.push(m) }, { noAck: true })
      const a = send(`${single.url}/${rogue}/a`, { method: 'POST', body: 'A' })
      const b = send(`${single.url}/${rogue}/b`, { method: 'POST', body: 'B' })
      await waitFor(() => held.length === 2, { what: 'both requests at the responder' })
      const ma = held.find((m) => m.content.toString() === 'A')!
      const mb = held.find((m) => m.content.toString() === 'B')!
      const reply = (to: ConsumeMessage, body: string, correlationId?: string): void => {
        ch.sendToQueue(to.properties.replyTo as string, Buffer.from(body), { ...(correlationId === undefined ? {} : { correlationId }), headers: { 'x-status-code': '200' } })
      }
      const late = async (): Promise<number> => Number(/^enqueuer_late_replies_total (\d+)/m.exec((await send(`${single.url}/metrics`)).body.toString())?.[1] ?? 'NaN')
      assert.equal(await late(), 0)
      reply(ma, 'stray', '00000000-0000-4000-8000-000000000000')
      reply(ma, 'no id')
      reply(ma, 'for A', ma.properties.correlationId as string)
      assert.equal((await a).body.toString(), 'for A')
      // A again, now that A is answered: late.
      reply(mb, 'A again', ma.properties.correlationId as string)
      await waitFor(async () => await late() === 3, { what: 'three replies counted as late' })
      assert.equal(single.context.pool.pendingReplies, 1, 'B should still be waiting')
      reply(mb, 'for B', mb.properties.correlationId as string)
      const answerB = await b
      assert.equal(answerB.status, 200)
      assert.equal(answerB.body.toString(), 'for B')
      assert.equal(answerB.headers['x-correlation-id'], mb.properties.correlationId)
      assert.equal(await late(), 3)
    } finally {
      await ch.deleteQueue(`${rogue}_requests`).catch(() => {})
      await ch.close().catch(() => {})
      await single.close()
    }
  })
})
