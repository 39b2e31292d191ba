// The broker takes the dequeuer's consumer away while the connection lives:
// it closes the consuming channel (a 406 from an ack it does not know, the
// consumer timeout) or cancels the consumer (the queue was deleted). On a
// private node, with traffic before and after each event: relayq consumes
// again and serves; when it cannot, readiness says why and liveness fails
// after DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import * as amqp from 'amqplib'
import { uniqueService } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { PrivateBroker } from '../helpers/private-broker'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

interface Outcome { readonly sentAt: number, readonly status: number, readonly body: string }

/** Four clients in a loop until stopped: traffic before, during and after an event. */
class Traffic {
  readonly outcomes: Outcome[] = []
  private stopped = false
  private readonly done: Promise<void>

  constructor (url: () => string) {
    this.done = Promise.all([0, 1, 2, 3].map(async () => {
      while (!this.stopped) {
        const sentAt = Date.now()
        try {
          const r = await send(url())
          this.outcomes.push({ sentAt, status: r.status, body: r.body.toString().slice(0, 200) })
        } catch (err) {
          this.outcomes.push({ sentAt, status: 0, body: (err as Error).message })
        }
        await sleep(20)
      }
    })).then(() => {})
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.done
  }

  after (t: number): Outcome[] {
    return this.outcomes.filter((o) => o.sentAt >= t)
  }
}

describe('the broker takes the consumer away', () => {
  // consumer_timeout is checked once a minute on 3.10: only the last test waits for it.
  const broker = new PrivateBroker(['consumer_timeout = 5000'])
  let echo: Echo
  let enq: TestEnqueuer
  let deq: TestDequeuer
  const service = uniqueService('recover')
  const queue = `${service}_requests`

  before(async () => {
    await broker.start()
    echo = await startEcho(echoJson)
    const common = { RABBITMQ_URL: broker.url, RABBITMQ_RECONNECT_INITIAL_MS: '100', RABBITMQ_RECONNECT_MAX_MS: '1000' }
    deq = await startTestDequeuer(service, echo.url, { ...common, DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS: '2000', DOWNSTREAM_TIMEOUT: '100', DEQUEUER_CONCURRENCY: '10', LOG_LEVEL: 'info' })
    await deq.consuming
    enq = await startTestEnqueuer({ ...common, ENQUEUER_REPLY_TIMEOUT: '5', ENQUEUER_BREAKER_ENABLED: 'false', ENQUEUER_QUEUE_CHECK_TTL_MS: '200', ASYNC_JOBS: 'false' })
  })

  after(async () => {
    // The service first: a call still hanging would hold the dequeuer's drain.
    await echo?.close()
    await enq?.close()
    await deq?.close()
    await broker.stop()
  })

  async function consumers (): Promise<number> {
    const conn = await amqp.connect(broker.url)
    try {
      const ch = await conn.createChannel()
      return (await ch.checkQueue(queue)).consumerCount
    } finally {
      await conn.close()
    }
  }

  /** A 406 on the consuming channel, as an ack of a delivery tag it never sent would cause, injected broker-side. */
  async function badAckOnConsumingChannel (): Promise<void> {
    const { stdout } = await broker.ctl('eval', "[rabbit_channel:do(P, {'basic.ack', 999999, false}) || P <- rabbit_channel:list(), proplists:get_value(consumer_count, rabbit_channel:info(P, [consumer_count])) > 0].")
    assert.match(stdout, /^\[ok\]/, `exactly one consuming channel: ${stdout}`)
  }

  /** When the dequeuer logged `msg` (the n-th time, counting from 1). */
  async function loggedAt (msg: string, n = 1): Promise<number> {
    return await waitFor(() => {
      const line = deq.logs.lines.filter((l) => l.msg === msg)[n - 1]
      return line === undefined ? undefined : Date.parse(String(line.time))
    }, { timeoutMs: 120000, intervalMs: 200, what: `the dequeuer to log "${msg}"` })
  }

  /** Traffic sent after the event is served again: the first 200 after it, then every request sent from then on. */
  async function served (traffic: Traffic, eventAt: number, what: string): Promise<number> {
    const at = await waitFor(() => traffic.after(eventAt).find((o) => o.status === 200)?.sentAt, { timeoutMs: 15000, what: `a 200 after ${what}` })
    await sleep(1500)
    await traffic.stop()
    // Requests already waiting on the enqueuer's queue check when the consumer came back may still see the gap.
    const later = traffic.after(at + 500)
    assert.ok(later.length > 10, `${later.length} requests after recovery`)
    for (const o of later) assert.equal(o.status, 200, `after ${what}: ${o.status} ${o.body}`)
    return at - eventAt
  }

  it('a 406 closes the consuming channel: relayq opens another and consumes again, and traffic is served', async () => {
    const traffic = new Traffic(() => `${enq.url}/${service}/a`)
    await waitFor(() => traffic.outcomes.some((o) => o.status === 200), { what: 'traffic before the event' })
    await badAckOnConsumingChannel()
    const closedAt = await loggedAt('consuming channel error')
    const ms = await served(traffic, closedAt, 'the channel close')
    console.log(`# 406 on the consuming channel: first 200 sent ${ms} ms after the close`)
    assert.equal(await consumers(), 1)
    assert.ok(deq.logs.has('consuming again after the broker took the consumer away'))
  })

  it('the queue deleted under the consumer (a cancel): declared again, consumed again, traffic served', async () => {
    const traffic = new Traffic(() => `${enq.url}/${service}/b`)
    await waitFor(() => traffic.outcomes.some((o) => o.status === 200), { what: 'traffic before the event' })
    const conn = await amqp.connect(broker.url)
    try {
      await (await conn.createChannel()).deleteQueue(queue)
    } finally {
      await conn.close()
    }
    const cancelledAt = await loggedAt('the broker cancelled the consumer (queue deleted?); declaring it again')
    const ms = await served(traffic, cancelledAt, 'the queue was deleted')
    console.log(`# request queue deleted: first 200 sent ${ms} ms after the cancel`)
    assert.equal(await consumers(), 1)
  })

  it('when it cannot consume again: readiness says why, liveness fails after the limit, and both recover once it can', async () => {
    const traffic = new Traffic(() => `${enq.url}/${service}/c`)
    await waitFor(() => traffic.outcomes.some((o) => o.status === 200), { what: 'traffic before the event' })
    // Without read permission the queue cannot be consumed (nor its dead-letter binding made).
    await broker.ctl('set_permissions', '-p', '/', 'guest', '.*', '.*', '^$')
    try {
      await badAckOnConsumingChannel()
      const ready = await waitFor(async () => {
        const r = await send(`${deq.adminUrl}/readyz`)
        return r.status === 503 ? r.json<{ reason: string }>().reason : null
      }, { what: 'readiness to fail' })
      assert.match(ready, /not consuming: the broker closed the consuming channel \(406\); consuming again \(attempt \d+\)/)
      const live = await waitFor(async () => {
        const r = await send(`${deq.adminUrl}/livez`)
        return r.status === 503 ? r.json<{ reason: string }>().reason : null
      }, { timeoutMs: 10000, what: 'liveness to fail after DEQUEUER_CONSUMER_RECOVERY_LIMIT_MS' })
      assert.match(live, /not consuming for \d+ s/)
    } finally {
      await broker.ctl('set_permissions', '-p', '/', 'guest', '.*', '.*', '.*')
    }
    const t0 = Date.now()
    await waitFor(async () => (await send(`${deq.adminUrl}/livez`)).status === 200 && (await send(`${deq.adminUrl}/readyz`)).status === 200, { timeoutMs: 10000, what: 'liveness and readiness back' })
    const ms = await served(traffic, t0, 'the permission came back')
    console.log(`# permission restored: first 200 ${ms} ms after`)
  })

  it('the consumer timeout (406 from the broker\'s own check, once a minute on 3.10): consuming again, traffic served', { timeout: 150000 }, async () => {
    let hung: import('node:http').ServerResponse | null = null
    echo.behave((req, res) => {
      // The first call of /hang does not answer before the broker's timeout; its redelivery does.
      if (req.url.endsWith('/hang') && hung === null) { hung = res; return }
      return echoJson(req, res)
    })
    const traffic = new Traffic(() => `${enq.url}/${service}/d`)
    // Published as a ProxyMQ peer would: no caller deadline, so only DOWNSTREAM_TIMEOUT (100 s) bounds the call.
    const conn = await amqp.connect(broker.url)
    try {
      const ch = await conn.createConfirmChannel()
      await new Promise<void>((resolve, reject) => ch.sendToQueue(queue, Buffer.from('x'), { headers: { 'x-http-method': 'GET', 'x-http-path': '/hang' } }, (err) => (err ? reject(err) : resolve())))
    } finally {
      await conn.close()
    }
    await waitFor(() => hung !== null, { what: 'the hanging call' })
    const t0 = Date.now()
    const errors = deq.logs.lines.filter((l) => l.msg === 'consuming channel error').length
    const closedAt = await loggedAt('consuming channel error', errors + 1)
    const closed = deq.logs.lines.filter((l) => l.msg === 'consuming channel error')[errors]!
    assert.match(String(closed.err), /PRECONDITION_FAILED - delivery acknowledgement .* timed out/)
    console.log(`# consumer timeout: the broker closed the channel ${closedAt - t0} ms after the hang began`)
    // The service answers the call at last. Until then the redelivered messages (suspects after a lost channel)
    // wait for it: careful mode runs a suspect only once nothing else is in flight.
    hung!.writeHead(200)
    hung!.end('late')
    const ms = await served(traffic, closedAt, 'the consumer timeout')
    console.log(`# consumer timeout: first 200 sent ${ms} ms after the close`)
    assert.equal(await consumers(), 1)
  })
})
