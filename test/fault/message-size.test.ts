// A broker with a small max_message_size (1 MiB), on a private node. With
// RABBITMQ_MAX_MESSAGE_BYTES telling relayq the limit, a body the broker
// would refuse gets 413 before anything is published, and the requests in
// flight beside it are not failed by a closed publishing channel.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { uniqueService } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { PrivateBroker } from '../helpers/private-broker'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'

describe('a request larger than the broker takes', () => {
  const broker = new PrivateBroker(['max_message_size = 1048576'])
  let echo: Echo
  let enq: TestEnqueuer
  let deq: TestDequeuer
  const service = uniqueService('size')

  before(async () => {
    await broker.start()
    echo = await startEcho(echoJson)
    deq = await startTestDequeuer(service, echo.url, { RABBITMQ_URL: broker.url })
    await deq.consuming
    enq = await startTestEnqueuer({ RABBITMQ_URL: broker.url, RABBITMQ_MAX_MESSAGE_BYTES: '1048576', ENQUEUER_MAX_BODY_BYTES: '1000000', ENQUEUER_POOL_SIZE: '1', ASYNC_JOBS: 'false' })
  })

  after(async () => {
    await enq?.close()
    await deq?.close()
    await echo?.close()
    await broker.stop()
  })

  it('start-up refuses a body limit the broker cannot carry', async () => {
    await assert.rejects(startTestEnqueuer({ RABBITMQ_URL: broker.url, RABBITMQ_MAX_MESSAGE_BYTES: '1048576' }), /ENQUEUER_MAX_BODY_BYTES.*RABBITMQ_MAX_MESSAGE_BYTES/)
  })

  it('2 MB gets 413 before publishing; 20 requests beside it all get 200; 900 kB fits', async () => {
    const small = Array.from({ length: 20 }, (_, i) => send(`${enq.url}/${service}/small-${i}`, { method: 'POST', body: 'x' }))
    const big = await send(`${enq.url}/${service}/big`, { method: 'POST', body: Buffer.alloc(2_000_000, 1) })
    assert.equal(big.status, 413, big.body.toString())
    for (const r of await Promise.all(small)) assert.equal(r.status, 200, r.body.toString())
    const fits = await send(`${enq.url}/${service}/fits`, { method: 'POST', body: Buffer.alloc(900_000, 1) })
    assert.equal(fits.status, 200, fits.body.toString())
    assert.equal(echo.received.some((r) => r.url.endsWith('/big')), false)
  })
})
