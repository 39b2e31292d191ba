// A memory alarm over jobs in flight, on a private node: the replies to the
// jobs' durable results queue are written while the broker blocks the
// publishing connection, and go out only when the alarm clears. Giving up on
// their confirms meanwhile returned the originals to the queue while the
// replies (and recount copies) were still on their way, so each ~11 s of
// alarm ran every job once more. Now each job runs at most once more than
// before the alarm (here: exactly once), and every reply arrives.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import * as amqp from 'amqplib'
import { uniqueService } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { PrivateBroker } from '../helpers/private-broker'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

describe('memory alarm over jobs in flight', () => {
  const broker = new PrivateBroker()
  let echo: Echo
  let deq: TestDequeuer
  let conn: amqp.ChannelModel
  const service = uniqueService('alarm')
  const results = `${service}_results`
  const calls = new Map<string, number>()

  before(async () => {
    await broker.start()
    echo = await startEcho((req, res) => {
      calls.set(req.url, (calls.get(req.url) ?? 0) + 1)
      setTimeout(() => { res.writeHead(200); res.end('done') }, 2000)
    })
    deq = await startTestDequeuer(service, echo.url, { RABBITMQ_URL: broker.url, DEQUEUER_CONCURRENCY: '5', DEQUEUER_MAX_ATTEMPTS: '3', CIRCUIT_BREAKER_ENABLED: 'false' })
    await deq.consuming
    conn = await amqp.connect(broker.url)
  })

  after(async () => {
    await broker.ctl('set_vm_memory_high_watermark', '0.4').catch(() => {})
    await conn?.close().catch(() => {})
    await deq?.close()
    await echo?.close()
    await broker.stop()
  })

  it('a 25 s alarm: every job runs once and every reply arrives', { timeout: 120000 }, async () => {
    const ch = await conn.createConfirmChannel()
    await ch.assertQueue(results, { durable: true })
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve, reject) => ch.sendToQueue(`${service}_requests`, Buffer.from(`job ${i}`), {
        persistent: true, replyTo: results, correlationId: `job-${i}`, headers: { 'x-http-method': 'POST', 'x-http-path': `/job-${i}` },
      }, (err) => (err ? reject(err) : resolve())))
    }
    await waitFor(() => calls.size === 5, { what: 'all five jobs in flight' })
    try {
      await broker.ctl('set_vm_memory_high_watermark', '0.0000001')
      // Longer than two confirm timeouts (10 s each): the old code replayed every job twice over.
      await sleep(25000)
    } finally {
      await broker.ctl('set_vm_memory_high_watermark', '0.4')
    }
    const check = await conn.createChannel()
    await waitFor(async () => (await check.checkQueue(results)).messageCount >= 5, { timeoutMs: 30000, what: 'five replies' })
    // Copies released by the unblock would be delivered and run within a few seconds.
    await waitFor(async () => (await check.checkQueue(`${service}_requests`)).messageCount === 0 && deq.inflight.count === 0, { timeoutMs: 30000, what: 'the request queue empty and nothing in flight' })
    await sleep(3000)
    const runs = [...calls.entries()].map(([path, n]) => `${path}=${n}`).join(' ')
    console.log(`# runs per job after the alarm: ${runs}; replies: ${(await check.checkQueue(results)).messageCount}`)
    for (const [path, n] of calls) assert.ok(n <= 2, `${path} ran ${n} times`)
    assert.deepEqual([...calls.values()], [1, 1, 1, 1, 1], runs)
    await check.deleteQueue(results)
  })
})
