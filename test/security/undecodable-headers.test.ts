// A hostile AMQP publisher (any principal with write on the default exchange)
// sends a message whose header table nests an array 10,000 deep. amqplib's
// recursive decoder overflows the stack on it while reading the frame, which
// used to close the whole connection on every delivery (a crash loop). Now
// the message costs only itself, on each path relayq consumes: the request
// queue (dead-lettered as malformed), the async results queue (dropped) and
// an enqueuer's direct reply-to address (only that reply is lost).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runDlqTool } from '../../src/dlq/cli'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { nestedArrayEntries, publishRaw, stringEntry } from '../helpers/hostile-amqp'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type LogCapture } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const DEPTH = 10_000
const deep = (): Buffer => Buffer.concat([stringEntry('x-http-method', 'POST'), nestedArrayEntries(DEPTH)])

/** Warnings about a broker connection (lost, error, reconnect): there must be none. */
function connectionTrouble (logs: LogCapture): unknown[] {
  return logs.lines.filter((l) => (l.level as number) >= 40 && l.connection !== undefined)
}

describe('a header table nested 10,000 deep', () => {
  let broker: TestBroker
  let echo: Echo
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(req.body)
    })
  })
  after(async () => {
    while (cleanup.length > 0) await cleanup.pop()!().catch(() => {})
    await echo.close()
    await broker.close()
  })

  it('overflows amqplib\'s own table decoder (what the guard is for)', () => {
    const req = createRequire(__filename)
    const codec = req(join(req.resolve('amqplib'), '..', 'lib', 'codec.js')) as { decodeFields: (b: Buffer) => unknown }
    assert.throws(() => codec.decodeFields(deep()), RangeError)
  })

  it('on the request queue: dead-lettered as malformed, the connection stays, other requests are served', async () => {
    const service = uniqueService('deep')
    cleanup.push(() => broker.deleteService(service))
    const deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '3' })
    cleanup.push(() => deq.close())
    await deq.consuming
    const enq = await startTestEnqueuer()
    cleanup.push(() => enq.close())
    const ch = await broker.conn.createConfirmChannel()
    cleanup.push(() => ch.close())
    await publishRaw(ch, `${service}_requests`, deep(), { correlationId: 'hostile-1' })
    const dead = await waitFor(async () => (await broker.peekAll(`${service}_requests.dlq`))[0], { what: 'the message in the DLQ' })
    const headers = dead.properties.headers as Record<string, unknown>
    assert.equal(headers['x-relayq-dead-letter-reason'], 'malformed')
    assert.equal(dead.properties.correlationId, 'hostile-1')
    assert.match(String(headers['x-relayq-undecodable']), /nested deeper than/)
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/ok`, { method: 'POST', body: `n${i}` })))
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
    assert.equal(await broker.depth(`${service}_requests`), 0)
    assert.deepEqual(connectionTrouble(deq.logs), [])
  })

  it('on the async results queue: dropped, the enqueuer keeps its connection and jobs complete', async () => {
    const service = uniqueService('deepjobs')
    const results = `t-results-${randomBytes(4).toString('hex')}`
    let queueName: string | null = null
    cleanup.push(async () => {
      await broker.deleteService(service)
      const c = await broker.channel()
      for (const q of [results, ...(queueName === null ? [] : [queueName])]) await c.deleteQueue(q).catch(() => {})
      await c.close().catch(() => {})
    })
    const deq = await startTestDequeuer(service, echo.url)
    cleanup.push(() => deq.close())
    await deq.consuming
    const enq = await startTestEnqueuer({ ASYNC_RESULTS_QUEUE: results })
    cleanup.push(() => enq.close())
    const runJob = async (): Promise<string> => {
      const accepted = await send(`${enq.url}/${service}/job`, { method: 'POST', body: 'job', headers: { prefer: 'respond-async' } })
      assert.equal(accepted.status, 202)
      const id = accepted.json<{ job_id: string }>().job_id
      const job = await waitFor(async () => {
        const j = (await send(`${enq.url}/jobs/${id}`)).json<{ status: string }>()
        return j.status === 'pending' ? null : j
      }, { what: 'the job to finish' })
      return job.status
    }
    // The results queue (this enqueuer's own, without Redis) is declared with the first job.
    assert.equal(await runJob(), 'completed')
    const queue = enq.context.jobs!.resultsQueue
    queueName = queue
    await waitFor(async () => (await broker.consumers(queue)) === 1, { what: 'the results consumer' })
    const ch = await broker.conn.createConfirmChannel()
    cleanup.push(() => ch.close())
    await publishRaw(ch, queue, deep(), { correlationId: 'not-a-job' })
    await waitFor(async () => (await broker.depth(queue)) === 0, { what: 'the hostile result to be consumed' })
    await waitFor(async () => /enqueuer_late_replies_total 1\b/.test((await send(`${enq.url}/metrics`)).body.toString()), { what: 'the dropped result to be counted' })
    assert.equal(await runJob(), 'completed')
    assert.equal(await broker.consumers(queue), 1)
    assert.deepEqual(connectionTrouble(enq.logs), [])
  })

  it('at an enqueuer\'s direct reply-to address: only the reply it forged is lost', async () => {
    // A queue the test consumes itself, to learn the enqueuer's reply-to address (any service sees it).
    const spy = uniqueService('deepspy')
    const served = uniqueService('deepok')
    cleanup.push(() => broker.deleteService(spy))
    cleanup.push(() => broker.deleteService(served))
    const spyCh = await broker.conn.createChannel()
    cleanup.push(() => spyCh.close())
    await spyCh.assertQueue(`${spy}_requests`, { arguments: { 'x-dead-letter-exchange': 'relayq.dlx' } })
    const seen: Array<{ replyTo: string, correlationId: string }> = []
    await spyCh.consume(`${spy}_requests`, (m) => { if (m !== null) seen.push({ replyTo: m.properties.replyTo as string, correlationId: m.properties.correlationId as string }) }, { noAck: true })
    const slow = await startEcho((req, res) => { setTimeout(() => { res.writeHead(200); res.end(req.body) }, 500) })
    cleanup.push(() => slow.close())
    const deq = await startTestDequeuer(served, slow.url)
    cleanup.push(() => deq.close())
    await deq.consuming
    const enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '20' })
    cleanup.push(() => enq.close())
    const victim = send(`${enq.url}/${spy}/x`, { method: 'POST', body: 'v' })
    const target = await waitFor(() => seen[0], { what: 'the spied request' })
    const bystanders = Array.from({ length: 10 }, (_, i) => send(`${enq.url}/${served}/b`, { method: 'POST', body: `b${i}` }))
    const ch = await broker.conn.createConfirmChannel()
    cleanup.push(() => ch.close())
    await publishRaw(ch, target.replyTo, deep(), { correlationId: 'unknown-id' })
    await publishRaw(ch, target.replyTo, deep(), { correlationId: target.correlationId })
    const v = await victim
    assert.equal(v.status, 502)
    assert.equal(v.headers['x-relayq-error'], 'RQ_ERR_MALFORMED_REPLY')
    const others = await Promise.all(bystanders)
    assert.deepEqual(others.map((a) => a.status), Array(10).fill(200))
    assert.equal((await send(`${enq.url}/${served}/after`, { method: 'POST', body: 'a' })).status, 200)
    assert.deepEqual(connectionTrouble(enq.logs), [])
  })

  it('in a dead-letter queue: the dlq tool lists it', async () => {
    const service = uniqueService('deepdlq')
    cleanup.push(() => broker.deleteService(service))
    const deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    await deq.close()
    const ch = await broker.conn.createConfirmChannel()
    cleanup.push(() => ch.close())
    await publishRaw(ch, `${service}_requests.dlq`, deep(), { correlationId: 'in-the-dlq' })
    let out = ''
    const code = await runDlqTool(['list', '--service', service, '--json'], { RABBITMQ_URL: AMQP_URL }, (s) => { out += s }, () => {})
    assert.equal(code, 0)
    const rows = JSON.parse(out) as Array<{ id: string }>
    assert.deepEqual(rows.map((r) => r.id), ['in-the-dlq'])
    assert.equal(await broker.depth(`${service}_requests.dlq`), 1)
  })
})
