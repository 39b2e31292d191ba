// Guard test for every place relayq reaches into amqplib's internals
// (internals.ts: the frame guard and write coalescing; publish.ts: the frame
// encoder, also held by publish.test.ts). Each reach checks the shape it needs
// and falls back when it differs; this test fails loudly on an amqplib upgrade
// that changes that shape or stops calling what relayq hooks.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as amqp from 'amqplib'
import { coalesceWrites } from '../../src/amqp/coalesce'
import { installFrameGuard } from '../../src/amqp/frame-guard'
import { adoptConnection } from '../../src/amqp/internals'
import { encodesItself } from '../../src/amqp/publish'
import { createLogger } from '../../src/log'
import { AMQP_URL } from '../helpers/broker'
import { nestedArrayEntries, publishRaw } from '../helpers/hostile-amqp'
import { LogCapture } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const PINNED = '2.3.1'

interface Stream { cork: () => void }

describe('amqplib internals relayq relies on', () => {
  const conns: amqp.ChannelModel[] = []
  const queue = `t-internals-${process.pid}-${Date.now()}`

  async function open (): Promise<amqp.ChannelModel> {
    const c = await amqp.connect(AMQP_URL)
    c.on('error', () => {})
    conns.push(c)
    return c
  }

  before(async () => {
    const c = await open()
    const ch = await c.createChannel()
    await ch.assertQueue(queue, { autoDelete: false })
    await ch.close()
  })
  after(async () => {
    const ch = await conns[0]!.createChannel()
    await ch.deleteQueue(queue).catch(() => {})
    for (const c of conns) await c.close().catch(() => {})
  })

  it(`the pinned amqplib (${PINNED}) matches every reach`, async () => {
    const { version } = JSON.parse(readFileSync(join(createRequire(__filename).resolve('amqplib'), '..', 'package.json'), 'utf8')) as { version: string }
    assert.equal(version, PINNED, 'amqplib was upgraded: check frame-guard.ts, coalesce.ts and publish.ts against it, then update PINNED')
    const c = await open()
    assert.equal(installFrameGuard(c), true, 'frame-guard.ts: amqplib connection internals changed; header tables are decoded unguarded')
    assert.equal(coalesceWrites(c), true, 'coalesce.ts: amqplib muxer internals changed; writes are not coalesced')
    assert.equal(encodesItself(await c.createChannel()), true, 'publish.ts: amqplib channel internals changed')
    const logs = new LogCapture()
    const installed = adoptConnection(await open(), createLogger('info', {}, logs), 'enqueuer')
    assert.deepEqual(installed, { frameGuard: true, coalesce: true })
    assert.deepEqual(logs.lines, [])
  })

  it('write coalescing corks the socket around the muxer\'s flush', async () => {
    const c = await open()
    const stream = (c as unknown as { connection: { stream: Stream } }).connection.stream
    let corks = 0
    const cork = stream.cork.bind(stream)
    stream.cork = () => { corks++; cork() }
    assert.equal(coalesceWrites(c), true)
    const ch = await c.createConfirmChannel()
    for (let i = 0; i < 50; i++) ch.sendToQueue(queue, Buffer.from(String(i)))
    await ch.waitForConfirms()
    assert.ok(corks >= 1, 'amqplib no longer flushes through muxer._readIncoming')
    assert.ok(corks < 50, `${corks} corks for 50 publishes in one tick: not batched`)
    await ch.purgeQueue(queue)
  })

  it('the frame guard sees every content header and leaves decodable tables as amqplib reads them', async () => {
    const guarded = await open()
    assert.equal(installFrameGuard(guarded), true)
    const plain = await open()
    const headers = { s: 'x', n: 7, big: 2 ** 40, neg: -3, f: 1.5, t: true, v: null, a: ['a', 1, [2]], o: { k: 'v', deep: { x: [1] } }, b: Buffer.from([1, 2]) }
    const pub = await plain.createConfirmChannel()
    // Two copies: one read through the guarded connection, one through plain amqplib.
    for (let i = 0; i < 2; i++) pub.sendToQueue(queue, Buffer.from('one'), { headers, correlationId: 'c-1' })
    await pub.waitForConfirms()
    const guardedCh = await guarded.createChannel()
    const plainCh = await plain.createChannel()
    const viaGuard = await waitFor(async () => (await guardedCh.get(queue, { noAck: true })) || null, { what: 'the message' })
    const viaPlain = await waitFor(async () => (await plainCh.get(queue, { noAck: true })) || null, { what: 'the message again' })
    assert.deepEqual(viaGuard.properties.headers, viaPlain.properties.headers)
    assert.equal(viaGuard.properties.correlationId, 'c-1')
    await publishRaw(pub, queue, nestedArrayEntries(10_000), { correlationId: 'deep' })
    const deep = await waitFor(async () => (await guardedCh.get(queue, { noAck: true })) || null, { what: 'the deep message' })
    assert.equal(deep.properties.correlationId, 'deep')
    assert.match(String((deep.properties.headers as Record<string, unknown>)['x-relayq-undecodable']), /nested deeper/)
  })
})
