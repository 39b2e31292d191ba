// A hostile AMQP publisher forges relayq's control headers with values out of
// range. Each such message is dead-lettered as malformed without reaching the
// service; none breaks a channel or loops (a deadline of 1e300 used to become
// `expiration: "1e+300"` on a republished copy, which the broker refuses by
// closing the dequeuer's publishing channel).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const FORGED: Array<[string, Record<string, unknown>]> = [
  ['deadline 1e300 (a double)', { 'x-relayq-deadline': 1e300 }],
  ['deadline "1e300"', { 'x-relayq-deadline': '1e300' }],
  ['deadline in 1970', { 'x-relayq-deadline': 5 }],
  ['deadline a year ahead', { 'x-relayq-deadline': String(Date.now() + 365 * 86400000) }],
  ['deadline in hex', { 'x-relayq-deadline': `0x${(Date.now() + 60000).toString(16)}` }],
  ['negative attempts', { 'x-relayq-attempts': -1 }],
  ['attempts 1e12', { 'x-relayq-attempts': 1e12 }],
  ['attempts "0x10"', { 'x-relayq-attempts': '0x10' }],
  ['fractional lost deliveries', { 'x-relayq-lost-deliveries': 0.5 }],
  ['delivery count "many"', { 'x-delivery-count': 'many' }],
  ['first attempt in the far future', { 'x-relayq-first-attempt-at': 1e15 }],
]

describe('forged control headers', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: TestEnqueuer
  const service = uniqueService('forged')
  let forgedCalls = 0

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => {
      if (req.headers['x-test-forged'] !== undefined) forgedCalls++
      res.writeHead(200)
      res.end(req.body)
    })
    deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '3' })
    await deq.consuming
    enq = await startTestEnqueuer()
  })
  after(async () => {
    await enq?.close()
    await deq?.close()
    await echo?.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('are dead-lettered as malformed, never forwarded, and break no channel', async () => {
    for (const [name, headers] of FORGED) {
      await broker.publish(`${service}_requests`, Buffer.from(name), { headers: { ...headers, 'x-test-forged': name, 'x-http-method': 'POST' }, correlationId: name })
    }
    const dead = await waitFor(async () => {
      const all = await broker.peekAll(`${service}_requests.dlq`)
      return all.length >= FORGED.length ? all : null
    }, { what: `${FORGED.length} dead letters` })
    const reasons = new Map(dead.map((m) => [m.properties.correlationId as string, (m.properties.headers as Record<string, unknown>)['x-relayq-dead-letter-reason']]))
    for (const [name] of FORGED) assert.equal(reasons.get(name), 'malformed', name)
    assert.equal(forgedCalls, 0)
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => send(`${enq.url}/${service}/ok`, { method: 'POST', body: `n${i}` })))
    assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200))
    assert.equal(await broker.depth(`${service}_requests`), 0)
    const trouble = deq.logs.lines.filter((l) => (l.level as number) >= 40 && /channel|connection/.test(String(l.msg)))
    assert.deepEqual(trouble, [])
  })
})
