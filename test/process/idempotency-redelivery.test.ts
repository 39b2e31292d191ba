// A dequeuer killed (-9) after the service answered an idempotent request but
// before its reply and ack reached the broker: the redelivery is answered
// from the answer the dequeuer recorded (DEQUEUER_IDEMPOTENCY_REDIS_URL), and
// the service is not called again.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import Redis from 'ioredis'
import { scopedKey } from '../../src/enqueuer/idempotency/key'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { REDIS_URL } from '../helpers/redis'
import { startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { TcpProxy } from '../helpers/tcp-proxy'
import { waitFor } from '../helpers/wait'

describe('an idempotent request redelivered after a dequeuer crash', () => {
  let broker: TestBroker
  let echo: Echo
  let enq: TestEnqueuer
  let proxy: TcpProxy
  const service = uniqueService('idemcrash')
  const key = `crash-${randomBytes(4).toString('hex')}`
  const recordKey = `relayq:idem-answer:${scopedKey(service, '', key)}`
  const running: RelayProcess[] = []
  const redis = new Redis(REDIS_URL)

  before(async () => {
    broker = await connectBroker()
    proxy = new TcpProxy('127.0.0.1', Number(new URL(AMQP_URL).port || 5672))
    await proxy.start()
    echo = await startEcho((req, res) => {
      // From here nothing the dequeuer sends reaches the broker: its reply and its ack are lost with it.
      if (req.body.toString() === 'crash-me') proxy.setMode('blackhole')
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`answer ${randomBytes(6).toString('hex')}`)
    })
    enq = await startTestEnqueuer({ ENQUEUER_IDEMPOTENCY: 'true' })
  })
  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await enq.close()
    await echo.close()
    proxy.cut()
    await proxy.stop()
    await broker.deleteService(service)
    await broker.close()
    await redis.del(recordKey)
    redis.disconnect()
  })

  async function dequeuer (amqpUrl: string): Promise<RelayProcess> {
    const adminPort = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'dequeuer', RABBITMQ_URL: amqpUrl, SERVICE_NAME: service, DOWNSTREAM_URL: echo.url, METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1', DEQUEUER_IDEMPOTENCY_REDIS_URL: REDIS_URL, DEQUEUER_IDEMPOTENCY_TTL: '120', LOG_LEVEL: 'warn' })
    running.push(p)
    await waitReady(`http://127.0.0.1:${adminPort}`)
    return p
  }

  it('is answered from the record: the client gets the first answer and the service ran once', async () => {
    const u = new URL(AMQP_URL)
    u.port = String(proxy.port)
    const first = await dequeuer(u.toString())
    const answer = send(`${enq.url}/${service}/pay`, { method: 'POST', body: 'crash-me', headers: { 'idempotency-key': `"${key}"`, 'x-relayq-timeout-ms': '20000' } })
    // The answer is recorded before the reply and the ack: kill the dequeuer then.
    await waitFor(async () => (await redis.exists(recordKey)) === 1, { timeoutMs: 10000, what: 'the answer to be recorded' })
    first.kill('SIGKILL')
    await first.exited
    proxy.cut()
    proxy.setMode('pass')
    await dequeuer(AMQP_URL)
    const res = await answer
    assert.equal(res.status, 200, res.body.toString())
    const calls = echo.received.filter((r) => r.body.toString() === 'crash-me')
    assert.equal(calls.length, 1)
    assert.match(res.body.toString(), /^answer [0-9a-f]{12}$/)
  })
})
