// The stream messages (src/amqp/stream-wire.ts) and the dequeuer's decision to
// stream (src/dequeuer/stream.ts wantsStream): round trips, strict reading of
// what a peer may forge, every header a string.
import assert from 'node:assert/strict'
import type { ConsumeMessage } from 'amqplib'
import { describe, it } from 'node:test'
import {
  SH, encodeAccept, encodeControl, encodeStreamMessage, readAccept, readControl, streamKind, streamPosition, type StreamKind,
} from '../../src/amqp/stream-wire'
import type { Publishable } from '../../src/amqp/wire'
import { ConfigError, loadConfig } from '../../src/config/load'
import { decideAfterAttempt } from '../../src/dequeuer/outcome'
import { streamAnnouncement } from '../../src/enqueuer/stream'
import { wantsStream } from '../../src/dequeuer/stream'

const ADDRESS = 'amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjE.abc'
const ID = '4b0f1d2e-6c1a-4f5e-9a57-0f3c2d1e0a9b'

/** As a consumer receives it: the broker rewrote `amq.rabbitmq.reply-to` into the publisher's own address. */
function delivered (p: Publishable, replyTo: string | null = ADDRESS): ConsumeMessage {
  return {
    content: p.content,
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', consumerTag: 'c' },
    properties: { headers: JSON.parse(JSON.stringify(p.options.headers ?? {})), correlationId: p.options.correlationId, replyTo: replyTo ?? undefined },
  } as unknown as ConsumeMessage
}

function raw (headers: Record<string, string>): Buffer[] {
  return Object.entries(headers).flatMap(([k, v]) => [Buffer.from(k), Buffer.from(v)])
}

describe('stream wire', () => {
  it('announces window and credit wait as one string, and reads back only well-formed values, clamped', () => {
    const value = encodeAccept({ window: 16, creditWaitMs: 65000 })
    assert.equal(value, '16;65000')
    assert.deepEqual(readAccept({ [SH.accept]: value }), { window: 16, creditWaitMs: 65000 })
    assert.deepEqual(readAccept({ [SH.accept]: '100000;1' }), null, 'five digits of window is not ours')
    assert.deepEqual(readAccept({ [SH.accept]: '9999;1' }), { window: 64, creditWaitMs: 1000 })
    assert.deepEqual(readAccept({ [SH.accept]: '16;999999999' }), { window: 16, creditWaitMs: 3600_000 })
    for (const bad of ['1', '', '1;1', 'x;1', '16; 5', '16;5;5', '-3;100', '1e3;5']) assert.equal(readAccept({ [SH.accept]: bad }), null, bad)
    assert.equal(readAccept({ [SH.accept]: Buffer.from('16;65000') }) !== null, true, 'a longstr read as a Buffer')
    assert.equal(readAccept(undefined), null)
    assert.equal(readAccept({}), null)
  })

  it('head, chunk and end round-trip with every header a string', () => {
    const kinds: StreamKind[] = ['head', 'chunk', 'end']
    kinds.forEach((kind, seq) => {
      const m = encodeStreamMessage(kind, ID, seq, 'corr-1', kind === 'head' ? { 'x-status-code': '200', 'content-type': 'text/event-stream' } : {}, Buffer.from(kind))
      assert.equal(m.options.replyTo, 'amq.rabbitmq.reply-to')
      assert.equal(m.options.mandatory, undefined)
      for (const v of Object.values(m.options.headers as Record<string, unknown>)) assert.equal(typeof v, 'string')
      const msg = delivered(m)
      assert.equal(streamKind(msg), kind)
      assert.deepEqual(streamPosition(msg), { kind, id: ID, seq, replyTo: ADDRESS })
    })
  })

  it('a reply without the stream header is no stream (the one check on every reply)', () => {
    assert.equal(streamKind(delivered({ content: Buffer.alloc(0), options: { headers: { 'x-status-code': '200' } } })), null)
    assert.equal(streamKind(delivered({ content: Buffer.alloc(0), options: {} })), null)
    assert.equal(streamKind(delivered({ content: Buffer.alloc(0), options: { headers: { [SH.kind]: 'HEAD' } } })), null)
  })

  it('refuses a stream message with a forged position or no dequeuer address to answer', () => {
    const good = encodeStreamMessage('chunk', ID, 3, 'c', {}, Buffer.alloc(1))
    const with_ = (h: Record<string, unknown>): Publishable => ({ content: good.content, options: { ...good.options, headers: { ...(good.options.headers as object), ...h } } })
    assert.equal(streamPosition(delivered(with_({ [SH.seq]: '-1' }))), null)
    assert.equal(streamPosition(delivered(with_({ [SH.seq]: '1e3' }))), null)
    assert.equal(streamPosition(delivered(with_({ [SH.id]: 'not a uuid; drop table' }))), null)
    assert.equal(streamPosition(delivered(good, null)), null)
    assert.equal(streamPosition(delivered(good, 'some_named_queue')), null, 'credits go only to a direct reply-to address')
  })

  it('credits and cancels round-trip; anything else is ignored', () => {
    assert.deepEqual(readControl(delivered(encodeControl('c', ID, { ack: 12 }))), { id: ID, ack: 12 })
    assert.deepEqual(readControl(delivered(encodeControl('c', ID, { cancel: 'client_gone' }))), { id: ID, cancel: 'client_gone' })
    for (const v of Object.values(encodeControl('c', ID, { ack: 12 }).options.headers as Record<string, unknown>)) assert.equal(typeof v, 'string')
    assert.equal(readControl(delivered({ content: Buffer.alloc(0), options: { headers: { [SH.id]: ID, [SH.ack]: '-4' } } })), null)
    assert.equal(readControl(delivered({ content: Buffer.alloc(0), options: { headers: { [SH.ack]: '4' } } })), null)
    assert.equal(readControl(delivered({ content: Buffer.alloc(0), options: {} })), null)
  })
})

describe('when the dequeuer streams', () => {
  const settings = { thresholdBytes: 1024 * 1024, retryStatuses: new Set([503]) }

  it('an event stream or a body declared over the threshold at once; a body of unknown length later, if it is long or slow', () => {
    assert.equal(wantsStream(200, raw({ 'content-type': 'text/event-stream; charset=utf-8', 'content-length': '10' }), settings), 'now')
    assert.equal(wantsStream(200, raw({ 'Content-Type': 'Text/Event-Stream' }), settings), 'now')
    assert.equal(wantsStream(200, raw({ 'content-length': String(1024 * 1024 + 1) }), settings), 'now')
    assert.equal(wantsStream(200, raw({ 'transfer-encoding': 'chunked' }), settings), 'later')
  })

  it('buffers a small declared body, a bodiless status, and a status that will be retried', () => {
    assert.equal(wantsStream(200, raw({ 'content-length': String(1024 * 1024) }), settings), 'never')
    assert.equal(wantsStream(200, raw({ 'content-type': 'application/json', 'content-length': '2' }), settings), 'never')
    assert.equal(wantsStream(204, raw({}), settings), 'never')
    assert.equal(wantsStream(304, raw({}), settings), 'never')
    assert.equal(wantsStream(503, raw({ 'content-type': 'text/event-stream' }), settings), 'never')
    assert.equal(wantsStream(101, raw({}), settings), 'never')
  })
})

describe('a streamed call', () => {
  const policy = { maxAttempts: 5, retryDelayMs: 100, retryMaxDelayMs: 1000, retryStatuses: new Set([503]) }

  it('is acked as it ended, never retried or dead-lettered: part of it may have reached the client', () => {
    for (const result of [
      { kind: 'streamed', status: 200, cut: null },
      { kind: 'streamed', status: 200, cut: 'service_error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE' },
      { kind: 'streamed', status: 200, cut: 'credit_timeout' },
    ] as const) {
      assert.deepEqual(decideAfterAttempt(result, 1, policy, Date.now() + 60000), { kind: 'streamed', result })
      assert.deepEqual(decideAfterAttempt(result, 5, policy, Date.now() - 1), { kind: 'streamed', result }, 'nor at the last attempt or past the deadline')
    }
  })
})

describe('streaming settings', () => {
  const dequeuer = { RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'orders', DOWNSTREAM_URL: 'http://127.0.0.1:8080' }
  const refused = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env)
    } catch (err) {
      assert.ok(err instanceof ConfigError)
      return err.problems.map((p) => p.variable)
    }
    return []
  }

  it('defaults: streams above 1 MiB, a 30 s idle timeout, and the announcement carries the send timeout plus 5 s', () => {
    assert.equal(loadConfig(dequeuer).dequeuer?.streamThresholdBytes, 1024 * 1024)
    const e = loadConfig({ RELAYQ_MODE: 'enqueuer' }).enqueuer!
    assert.equal(e.streamIdleTimeoutMs, 30000)
    assert.equal(streamAnnouncement(e), `16;${e.sendTimeoutMs + 5000}`)
    assert.equal(streamAnnouncement(loadConfig({ RELAYQ_MODE: 'enqueuer', ENQUEUER_STREAM_IDLE_TIMEOUT_MS: '0' }).enqueuer!), null, '0 takes no streams')
  })

  it('refuses invalid values, naming the variable', () => {
    assert.deepEqual(refused({ ...dequeuer, DEQUEUER_STREAM_THRESHOLD_BYTES: '-1' }), ['DEQUEUER_STREAM_THRESHOLD_BYTES'])
    assert.deepEqual(refused({ RELAYQ_MODE: 'enqueuer', ENQUEUER_STREAM_IDLE_TIMEOUT_MS: '1.5' }), ['ENQUEUER_STREAM_IDLE_TIMEOUT_MS'])
  })
})
