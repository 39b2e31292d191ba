// What the enqueuer decides before publishing, against the real broker: the
// queue check's age, what a missing consumer does to the service breaker.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { assertRelayqError } from '../helpers/relayq-error'
import { startTestDequeuer, startTestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

describe('edge admission', () => {
  let broker: TestBroker
  let echo: Echo
  const services: string[] = []
  const unique = (prefix: string): string => {
    const s = uniqueService(prefix)
    services.push(s)
    return s
  }

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho()
  })

  after(async () => {
    await echo.close()
    for (const s of services) await broker.deleteService(s)
    await broker.close()
  })

  it('the first request after the last consumer left (idle past the TTL) gets 503 NO_CONSUMERS, not a 504 after the reply timeout', async () => {
    const service = unique('gone')
    const enq = await startTestEnqueuer({ ENQUEUER_QUEUE_CHECK_TTL_MS: '300', ENQUEUER_REPLY_TIMEOUT: '20', ASYNC_JOBS: 'false' })
    const deq = await startTestDequeuer(service, echo.url)
    try {
      await deq.consuming
      assert.equal((await send(`${enq.url}/${service}/warm`)).status, 200)
      await deq.close()
      await waitFor(async () => (await broker.consumers(`${service}_requests`)) === 0, { what: 'the consumer to go' })
      // Time is the subject: the cached "1 consumer" must be older than the TTL.
      await sleep(400)
      const res = await send(`${enq.url}/${service}/after-idle`, { method: 'POST', body: 'x' })
      assertRelayqError(res, 503, 'RQ_ERR_NO_CONSUMERS')
      assert.equal(await broker.depth(`${service}_requests`), 0, 'nothing was published to a queue nobody consumes')
    } finally {
      await deq.close()
      await enq.close()
    }
  })
})
