// The enqueuer's side of the stream protocol against a hand-written dequeuer
// on the real broker: duplicates are dropped, a gap cuts the response, a
// credit comes back once the client took the chunks, and an enqueuer with
// streams off neither announces them nor writes a stream it did not ask for.
import assert from 'node:assert/strict'
import type { Channel, ConsumeMessage } from 'amqplib'
import { after, before, describe, it } from 'node:test'
import { SH, encodeStreamMessage } from '../../src/amqp/stream-wire'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startTestEnqueuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const ID = '0d6c3f4e-1b2a-4c5d-8e9f-a0b1c2d3e4f5'

describe('stream protocol (enqueuer side)', () => {
  let broker: TestBroker
  let ch: Channel
  const service = uniqueService('sproto')
  const queue = `${service}_requests`
  const requests: ConsumeMessage[] = []
  const controls: ConsumeMessage[] = []
  let on: TestEnqueuer
  let off: TestEnqueuer

  before(async () => {
    broker = await connectBroker()
    ch = await broker.channel()
    await ch.assertQueue(queue, { durable: true })
    await ch.consume(queue, (m) => { if (m !== null) requests.push(m) }, { noAck: true })
    // The fake dequeuer's own address: credits and cancels come back here.
    await ch.consume('amq.rabbitmq.reply-to', (m) => { if (m !== null) controls.push(m) }, { noAck: true })
    on = await startTestEnqueuer({ ENQUEUER_STREAM_IDLE_TIMEOUT_MS: '5000' })
    off = await startTestEnqueuer({ ENQUEUER_STREAM_IDLE_TIMEOUT_MS: '0' })
  })

  after(async () => {
    await on.close()
    await off.close()
    await ch.close()
    await broker.deleteService(service)
    await broker.close()
  })

  /** Sends stream messages as a dequeuer would, to the request's reply address. */
  function send (req: ConsumeMessage, kind: 'head' | 'chunk' | 'end', seq: number, body = '', headers: Record<string, unknown> = {}): void {
    const m = encodeStreamMessage(kind, ID, seq, req.properties.correlationId as string, headers, Buffer.from(body))
    ch.publish('', req.properties.replyTo as string, m.content, m.options)
  }

  it('writes the head at once, drops a duplicate chunk, credits what the client took, and cuts the response on a gap', async () => {
    const before = requests.length
    const answer = fetch(`${on.url}/${service}/s`)
    const req = await waitFor(() => requests[before], { what: 'the request' })
    assert.match(String(req.properties.headers?.[SH.accept]), /^16;\d+$/)
    send(req, 'head', 0, '', { 'x-status-code': '200', 'content-type': 'text/plain' })
    const res = await answer
    assert.equal(res.status, 200)
    const reader = res.body!.getReader()
    const credits = controls.length
    for (let seq = 1; seq <= 4; seq++) send(req, 'chunk', seq, `c${seq};`)
    send(req, 'chunk', 4, 'DUPLICATE;')
    // The client's socket took the four chunks: one credit names the last of them.
    const credit = await waitFor(() => controls[credits], { what: 'a credit' })
    assert.equal(credit.properties.headers?.[SH.ack], '4')
    assert.equal(credit.properties.headers?.[SH.id], ID)
    send(req, 'chunk', 6, 'after a gap')
    let text = ''
    await assert.rejects(async () => {
      for (;;) {
        const r = await reader.read()
        if (r.done) break
        text += new TextDecoder().decode(r.value)
      }
    }, 'the cut body is an error')
    assert.equal(text, 'c1;c2;c3;c4;', 'neither the duplicate nor anything after the gap reached the client')
    const cancel = await waitFor(() => controls.find((c) => c.properties.headers?.[SH.cancel] !== undefined), { what: 'a cancel' })
    assert.equal(cancel.properties.headers?.[SH.cancel], 'gap')
  })

  it('with streams off, requests carry no announcement and a stream head is refused as a malformed reply', async () => {
    const before = requests.length
    const answer = fetch(`${off.url}/${service}/s`)
    const req = await waitFor(() => requests[before], { what: 'the request' })
    assert.equal(req.properties.headers?.[SH.accept], undefined)
    send(req, 'head', 0, '', { 'x-status-code': '200' })
    const res = await answer
    assert.equal(res.status, 502)
    assert.equal(res.headers.get('x-relayq-error'), 'RQ_ERR_MALFORMED_REPLY')
  })
})
