// Log lines as a log pipeline reads them: raw JSON, each key once (a repeated
// key is kept or dropped differently by every parser).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { freePort, spawnRelay, waitReady } from '../helpers/process'
import { waitFor } from '../helpers/wait'

describe('log lines', () => {
  let broker: TestBroker
  const service = uniqueService('loglines')

  before(async () => { broker = await connectBroker() })
  after(async () => {
    await broker.deleteService(service)
    await broker.close()
  })

  it('a dead-letter line names the service once', async () => {
    const adminPort = await freePort()
    const deq = spawnRelay({
      RELAYQ_MODE: 'dequeuer', SERVICE_NAME: service, DOWNSTREAM_URL: `http://127.0.0.1:${await freePort()}`,
      METRICS_PORT: String(adminPort), METRICS_HOST: '127.0.0.1', DEQUEUER_MAX_ATTEMPTS: '1', CIRCUIT_BREAKER_ENABLED: 'false',
    })
    try {
      await waitReady(`http://127.0.0.1:${adminPort}`)
      await broker.publish(`${service}_requests`, Buffer.from('x'), { messageId: 'log-line-1', headers: { 'x-http-method': 'POST' } })
      const line = await waitFor(() => deq.output().split('\n').find((l) => l.includes('"message dead-lettered"')), { what: 'the dead-letter line' })
      assert.equal(line.match(/"service":/g)?.length, 1, line)
    } finally {
      deq.kill('SIGKILL')
      await deq.exited
    }
  })
})
