// A message that kills the dequeuer on every delivery (kill -9 of the real
// process) reaches the dead-letter queue after exactly DEQUEUER_MAX_ATTEMPTS
// deliveries, while the messages sent with it are all served.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { Agent } from 'undici'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, Supervisor, type RelayProcess } from '../helpers/process'
import { startTestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

describe('poison message', () => {
  let broker: TestBroker
  const services: string[] = []

  after(async () => {
    for (const s of services) await broker.deleteService(s)
    await broker?.close()
  })

  for (const queueType of ['classic', 'quorum']) {
    it(`is dead-lettered after DEQUEUER_MAX_ATTEMPTS deliveries on a ${queueType} queue; 200 others are served`, async () => {
      broker ??= await connectBroker()
      const service = uniqueService(`poison-${queueType}`)
      services.push(service)
      let poisonDeliveries = 0
      let supervisor: Supervisor | null = null
      const echo = await startEcho((req, res) => {
        if (req.headers['x-test-poison'] !== undefined) {
          poisonDeliveries++
          // The service's answer never comes: the dequeuer dies holding the message.
          process.kill(supervisor!.current.pid, 'SIGKILL')
          res.destroy()
          return
        }
        res.writeHead(200)
        res.end(req.body)
      })
      const adminPort = await freePort()
      // Every dequeuer process the supervisor starts, so a failure can show what each one logged.
      const launched: RelayProcess[] = []
      supervisor = new Supervisor(() => launch(spawnRelay({
        RELAYQ_MODE: 'dequeuer',
        SERVICE_NAME: service,
        DOWNSTREAM_URL: echo.url,
        METRICS_PORT: String(adminPort),
        METRICS_HOST: '127.0.0.1',
        DEQUEUER_QUEUE_TYPE: queueType,
        DEQUEUER_MAX_ATTEMPTS: '3',
        DEQUEUER_CONCURRENCY: '20',
        CIRCUIT_BREAKER_ENABLED: 'false',
        // Each delivery's counts are logged at debug: an innocent message caught in a crash it did not cause shows there.
        LOG_LEVEL: 'debug',
      })))
      function launch (p: RelayProcess): RelayProcess {
        launched.push(p)
        return p
      }
      const enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '60', ENQUEUER_BREAKER_ENABLED: 'false' })
      const agent = new Agent({ connections: 50 })
      try {
        await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 1, { what: 'the dequeuer to consume' })
        const normal = Array.from({ length: 200 }, (_, i) => send(`${enq.url}/${service}/n`, { method: 'POST', body: `n${i}`, dispatcher: agent }))
        const poison = send(`${enq.url}/${service}/p`, { method: 'POST', body: 'poison', headers: { 'x-test-poison': '1' }, dispatcher: agent })
        const answers = await Promise.all(normal)
        try {
          answers.forEach((r, i) => {
            assert.equal(r.status, 200, `request ${i}: ${r.body.toString()}`)
            assert.equal(r.body.toString(), `n${i}`)
          })
        } catch (err) {
          // What each dequeuer process said (careful mode, dead letters), in order: the trail of a lost request.
          launched.forEach((p, n) => { for (const line of p.logs()) if (line.level !== 'debug') console.log(`# dequeuer ${n}: ${JSON.stringify(line)}`) })
          throw err
        }
        const p = await poison
        assert.equal(p.status, 502)
        assert.equal(p.headers['x-relayq-error'], 'RQ_ERR_REDELIVERY_LIMIT')
        assert.equal(poisonDeliveries, 3)
        assert.equal(supervisor.restarts, 3)
        const dlq = await waitFor(async () => { const m = await broker.peekAll(`${service}_requests.dlq`); return m.length > 0 ? m : null })
        assert.equal(dlq.length, 1, 'only the poison message is dead-lettered')
        const h = dlq[0]!.properties.headers as Record<string, unknown>
        assert.equal(h['x-relayq-dead-letter-reason'], 'redelivery_limit')
        assert.equal(dlq[0]!.content.toString(), 'poison')
        // Messages in flight beside the poison's first delivery lose that delivery (nothing can tell them apart yet);
        // from then on the poison runs alone, so no other message may be caught in a second crash. Stricter than the
        // answers: an innocent caught twice is answered by its other copy, and dead-lettered only when caught thrice.
        const poisonId = dlq[0]!.properties.correlationId as string
        const caughtAgain = launched.flatMap((proc) => proc.logs()).filter((l) => l.msg === 'delivery' && l.correlationId !== poisonId && Number(l.lost) > 1)
        assert.deepEqual(caughtAgain, [], 'messages other than the poison were caught in more than one crash')
        console.log(`# ${queueType}: poison deliveries ${poisonDeliveries}, restarts ${supervisor.restarts}, normal served ${answers.length}/200, dead-lettered ${dlq.length}`)
      } finally {
        await agent.close()
        await enq.close()
        await supervisor.stop()
        await echo.close()
      }
    })
  }
})
