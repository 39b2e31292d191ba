// ProxyMQ's dequeuer copies every message header into its HTTP request and
// its client fails on anything but strings ("'int' object has no attribute
// 'encode'"). Every header relayq writes on a message that can reach
// {service}_requests must be a string: requests (repeated headers and async
// jobs included) and the retry copies relayq publishes. Messages are read raw
// with amqplib, as a ProxyMQ peer would get them.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Message as GetMessage } from 'amqplib'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

/** Headers the broker itself adds when it dead-letters (a delay queue's copy back into the request queue): not relayq's. */
const BROKER_HEADERS = /^(x-death|x-delivery-count|x-acquired-count|x-(first|last)-death-.*)$/

function nonStrings (m: GetMessage): string[] {
  const headers = (m.properties.headers ?? {}) as Record<string, unknown>
  return Object.entries(headers).filter(([k, v]) => !BROKER_HEADERS.test(k) && typeof v !== 'string').map(([k, v]) => `${k}: ${typeof v} ${JSON.stringify(v)}`)
}

describe('header types on the wire', () => {
  let broker: TestBroker
  let enq: TestEnqueuer
  let echo: Echo
  const cleanup: Array<() => Promise<void>> = []

  before(async () => {
    broker = await connectBroker()
    enq = await startTestEnqueuer({ ENQUEUER_REPLY_TIMEOUT: '60' })
    echo = await startEcho((req, res) => { res.writeHead(503); res.end('busy') })
  })
  after(async () => {
    while (cleanup.length > 0) await cleanup.pop()!().catch(() => {})
    await enq?.close()
    await echo?.close()
    await broker.close()
  })

  it('a request and an async job published by the enqueuer carry only string headers', async () => {
    const spy = uniqueService('types')
    cleanup.push(() => broker.deleteService(spy))
    const ch = await broker.channel()
    cleanup.push(() => ch.close())
    await ch.assertQueue(`${spy}_requests`, { arguments: { 'x-dead-letter-exchange': 'relayq.dlx' } })
    const seen: GetMessage[] = []
    await ch.consume(`${spy}_requests`, (m) => { if (m !== null) seen.push(m) }, { noAck: true })
    void send(`${enq.url}/${spy}/a?b=1`, { method: 'PUT', body: 'x', headers: { 'x-multi': ['a', 'b'], cookie: ['c=1', 'd=2'], 'x-relayq-timeout-ms': '3000' } })
    void send(`${enq.url}/${spy}/job`, { method: 'POST', body: 'y', headers: { prefer: 'respond-async' } })
    await waitFor(() => seen.length === 2, { what: 'both messages' })
    for (const m of seen) assert.deepEqual(nonStrings(m), [])
    // The two are sent at once: tell them apart by method, not by arrival order.
    const put = seen.find((m) => (m.properties.headers as Record<string, unknown>)['x-http-method'] === 'PUT')
    const job = seen.find((m) => m !== put)
    assert.ok(put !== undefined && job !== undefined)
    const h = put.properties.headers as Record<string, unknown>
    assert.equal(h['x-multi'], 'a, b')
    assert.match(String(h['x-relayq-deadline']), /^[0-9]{13}$/)
    assert.match(String(put.properties.expiration), /^[0-9]+$/)
    assert.equal(typeof (job.properties.headers as Record<string, unknown>)['x-relayq-job'], 'string')
  })

  it('a retry copy carries only string headers, attempts and first-attempt time included', async () => {
    const service = uniqueService('typesretry')
    cleanup.push(() => broker.deleteService(service))
    const deq = await startTestDequeuer(service, echo.url, {
      DEQUEUER_RETRY_STATUSES: '503', DEQUEUER_RETRY_DELAY_MS: '20000', DEQUEUER_MAX_ATTEMPTS: '3', CIRCUIT_BREAKER_ENABLED: 'false',
    })
    cleanup.push(() => deq.close())
    await deq.consuming
    void send(`${enq.url}/${service}/r`, { method: 'POST', body: 'r', headers: { 'x-multi': ['a', 'b'] } })
    const copy = await waitFor(async () => (await broker.peekAll(`${service}_requests.retry.20000`))[0], { what: 'the retry copy' })
    assert.deepEqual(nonStrings(copy), [])
    const h = copy.properties.headers as Record<string, unknown>
    assert.equal(h['x-relayq-attempts'], '1')
    assert.match(String(h['x-relayq-first-attempt-at']), /^[0-9]{13}$/)
    assert.equal(h['x-relayq-last-error-code'], 'RQ_ERR_DOWNSTREAM_STATUS')
  })
})
