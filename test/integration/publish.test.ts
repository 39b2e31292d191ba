// The hot-path publish (src/amqp/publish.ts) against the real broker: it must
// deliver exactly what amqplib's publish would, keep confirm numbering right
// alongside amqplib's own publishes, and behave like amqplib on a closed channel.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { ConfirmChannel, GetMessage } from 'amqplib'
import { encodesItself, publish } from '../../src/amqp/publish'
import { encodeRequest } from '../../src/amqp/wire'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'

describe('hot-path publish', () => {
  let broker: TestBroker
  let ch: ConfirmChannel
  before(async () => {
    broker = await connectBroker()
    ch = await broker.conn.createConfirmChannel()
    ch.on('error', () => {})
  })
  after(async () => {
    await ch.close().catch(() => {})
    await broker.close()
  })

  async function freshQueue (): Promise<string> {
    const q = uniqueService('pub')
    await ch.assertQueue(q, { autoDelete: false, durable: false })
    return q
  }

  it('encodes itself on the amqplib version relayq pins', () => {
    assert.equal(encodesItself(ch), true, 'amqplib internals changed: src/amqp/publish.ts falls back to the slower public API')
  })

  it('delivers the same message as amqplib, confirmed, interleaved with amqplib publishes', async () => {
    const q = await freshQueue()
    const message = encodeRequest({
      method: 'PUT', path: '/a?b=ü', headers: { 'x-list': ['1', '2'], 'content-type': 'text/plain' }, body: Buffer.from('héllo'),
      deadline: Date.now() + 60000, replyTo: 'some-reply-queue', correlationId: 'c-1', contentType: 'text/plain', persistent: true,
    })
    const confirms: string[] = []
    const confirmed = (tag: string) => (err: unknown) => confirms.push(err == null ? tag : `${tag}:nack`)
    const N = 200
    for (let i = 0; i < N; i++) {
      publish(ch, '', q, { content: message.content, options: { ...message.options, messageId: `ours-${i}` } }, confirmed(`ours-${i}`))
      ch.publish('', q, message.content, { ...message.options, messageId: `amqplib-${i}` }, confirmed(`amqplib-${i}`))
    }
    await ch.waitForConfirms()
    assert.equal(confirms.length, 2 * N)
    assert.ok(confirms.every((c) => !c.endsWith(':nack')))
    const got = await broker.drain(q)
    assert.equal(got.length, 2 * N)
    const comparable = (m: GetMessage): unknown => ({ content: m.content.toString('hex'), props: { ...m.properties, messageId: undefined } })
    for (let i = 0; i < N; i++) {
      assert.equal(got[2 * i]!.properties.messageId, `ours-${i}`, 'order kept on the channel')
      assert.deepEqual(comparable(got[2 * i]!), comparable(got[2 * i + 1]!))
    }
    await ch.deleteQueue(q)
  })

  it('on a confirm channel, a publish without a callback still takes its confirm: later callbacks wait for their own', async () => {
    // The broker confirms every message on a confirm channel, so each publish must hold its place in amqplib's
    // list of callbacks (amqplib's own publish holds it with `false`). Without that, the confirm of a reply sent
    // unconfirmed resolved a later mandatory publish before the broker returned it: a reply to a queue that
    // does not exist counted as delivered.
    const q = await freshQueue()
    const events: string[] = []
    const onReturn = (m: { fields: { routingKey: string } }): void => { events.push(`return:${m.fields.routingKey}`) }
    ch.on('return', onReturn)
    try {
      for (let i = 0; i < 5; i++) publish(ch, '', q, { content: Buffer.from('unconfirmed'), options: {} })
      const missing = `${q}_missing`
      await new Promise<void>((resolve) => {
        publish(ch, '', missing, { content: Buffer.from('x'), options: { mandatory: true } }, () => {
          events.push('confirm')
          resolve()
        })
      })
      assert.deepEqual(events, [`return:${missing}`, 'confirm'], 'the return comes before the confirm of the same message')
      await ch.waitForConfirms()
    } finally {
      ch.off('return', onReturn)
    }
    assert.equal((await broker.drain(q)).length, 5)
    await ch.deleteQueue(q)
  })

  it('hands values it does not encode to amqplib, which delivers them', async () => {
    const q = await freshQueue()
    await new Promise<void>((resolve, reject) => {
      publish(ch, '', q, { content: Buffer.from('x'), options: { headers: { typed: { '!': 'unsignedbyte', value: 200 } } } }, (err) => (err == null ? resolve() : reject(err)))
    })
    const [m] = await broker.drain(q)
    assert.equal(m!.properties.headers!.typed, 200)
    await ch.deleteQueue(q)
  })

  it('throws on a closed channel like amqplib does', async () => {
    const closed = await broker.conn.createConfirmChannel()
    await closed.close()
    assert.throws(() => publish(closed, '', 'anything', { content: Buffer.alloc(0), options: {} }, () => {}), /Channel closed/)
  })
})
