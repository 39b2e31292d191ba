// The dequeuer's message path without a broker: prepare's checks, settle's
// carrying out, the batch answer split (ProxyMQ's three shapes) and careful
// mode (Isolation). The channel and the publisher are fakes that record.
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { Channel, ConsumeMessage } from 'amqplib'
import { describe, it } from 'node:test'
import pino from 'pino'
import type { Publishable } from '../../src/amqp/wire'
import { loadConfig } from '../../src/config/load'
import { Acker } from '../../src/dequeuer/acker'
import { split } from '../../src/dequeuer/batch'
import type { Delivery } from '../../src/dequeuer/consumer'
import { ControlHeaders, SIGNATURE_HEADER } from '../../src/dequeuer/control'
import type { ForwardResult } from '../../src/dequeuer/call-result'
import { Gate } from '../../src/dequeuer/gate'
import { Inflight } from '../../src/dequeuer/inflight'
import { Isolation } from '../../src/dequeuer/isolation'
import { decideAfterAttempt, type Outcome } from '../../src/dequeuer/outcome'
import { isPrepared, prepare, queueWaitSeconds, type PrepareDeps } from '../../src/dequeuer/prepare'
import { PublishError, UnroutableError, type Publisher } from '../../src/dequeuer/publisher'
import { settle, UnroutableWaits, type SettleDeps } from '../../src/dequeuer/settle'
import { createDequeuerMetrics } from '../../src/metrics/dequeuer'

const cfg = loadConfig({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'unit', DOWNSTREAM_URL: 'http://127.0.0.1:8080/base', DEQUEUER_MAX_ATTEMPTS: '3', DEQUEUER_MAX_MESSAGE_BYTES: '100' }).dequeuer!
const metrics = createDequeuerMetrics(null, 'unit', 1, { inflight: () => 0, prefetch: () => 1, consuming: () => true, consumeUp: () => true, publishUp: () => true })
const logger = pino({ level: 'silent' })

class FakeChannel extends EventEmitter {
  readonly acks: number[] = []
  readonly nacks: number[] = []
  ack (m: { fields: { deliveryTag: number } }): void { this.acks.push(m.fields.deliveryTag) }
  nack (m: { fields: { deliveryTag: number } }): void { this.nacks.push(m.fields.deliveryTag) }
}

let nextTag = 1
function delivery (opts: { headers?: Record<string, unknown>, body?: string, redelivered?: boolean, replyTo?: string } = {}): { d: Delivery, ch: FakeChannel } {
  const ch = new FakeChannel()
  const acker = new Acker(ch as unknown as Channel)
  const tag = nextTag++
  acker.track(tag)
  const msg = {
    content: Buffer.from(opts.body ?? 'hi'),
    fields: { deliveryTag: tag, redelivered: opts.redelivered ?? false, exchange: '', routingKey: 'unit_requests', consumerTag: 'c' },
    properties: { headers: { 'x-http-method': 'POST', 'x-http-path': '/p', ...opts.headers }, correlationId: `c${tag}`, replyTo: opts.replyTo, messageId: `c${tag}` },
  } as unknown as ConsumeMessage
  return { d: { msg, acker, receivedAt: performance.now(), trace: undefined }, ch }
}

function prepareDeps (over: Partial<PrepareDeps> = {}): PrepareDeps {
  const gate = new Gate()
  gate.resume('starting')
  return { cfg, logger, debug: false, metrics, gate, control: new ControlHeaders(null), holding: () => false, ...over }
}

describe('prepare', () => {
  it('passes a good message with its attempt, suspicion and a deadline capped by DOWNSTREAM_TIMEOUT', () => {
    const deadline = Date.now() + 1000
    const p = prepare(prepareDeps(), delivery({ headers: { 'x-relayq-deadline': String(deadline), 'x-relayq-attempts': '1', 'x-relayq-lost-deliveries': '1' } }).d)
    assert.ok(isPrepared(p))
    assert.equal(p.attempt, 2)
    assert.equal(p.suspect, true)
    assert.equal(p.forward.path, '/base/p')
    assert.equal(p.forward.deadline, deadline)
  })
  it('ends a message before any call: too large, malformed, expired, over the attempt limit', () => {
    const kind = (x: ReturnType<typeof prepare>): string => (isPrepared(x) ? 'prepared' : x.kind === 'dead_letter' ? `dead_letter:${x.reason}` : x.kind)
    assert.equal(kind(prepare(prepareDeps(), delivery({ body: 'x'.repeat(101) }).d)), 'dead_letter:too_large')
    assert.equal(kind(prepare(prepareDeps(), delivery({ headers: { 'x-http-method': 'BREW' } }).d)), 'dead_letter:malformed')
    assert.equal(kind(prepare(prepareDeps(), delivery({ headers: { 'x-relayq-deadline': String(Date.now() - 1) } }).d)), 'dead_letter:expired')
    assert.equal(kind(prepare(prepareDeps({ cfg: { ...cfg, expired: 'drop' } }), delivery({ headers: { 'x-relayq-deadline': String(Date.now() - 1) } }).d)), 'drop')
    // A classic queue counts a lost delivery by a copy; at the limit, the DLQ.
    assert.equal(kind(prepare(prepareDeps(), delivery({ redelivered: true }).d)), 'recount')
    assert.equal(kind(prepare(prepareDeps(), delivery({ redelivered: true, headers: { 'x-relayq-attempts': '2' } }).d)), 'dead_letter:redelivery_limit')
  })
  it('gives a message back uncounted while paused, and while a suspect runs alone', () => {
    const gate = new Gate()
    const paused = prepare(prepareDeps({ gate }), delivery().d)
    assert.deepEqual(paused, { kind: 'requeue', reason: 'paused' })
    gate.resume('starting')
    gate.pause('draining')
    assert.deepEqual(prepare(prepareDeps({ gate }), delivery().d), { kind: 'requeue', reason: 'draining' })
    assert.deepEqual(prepare(prepareDeps({ holding: () => true }), delivery().d), { kind: 'requeue', reason: 'isolating' })
  })
  it('with a key, ignores unsigned control headers (a first attempt, no suspect)', () => {
    const p = prepare(prepareDeps({ control: new ControlHeaders('k'.repeat(32)) }), delivery({ headers: { 'x-relayq-attempts': '2', 'x-relayq-lost-deliveries': '5' } }).d)
    assert.ok(isPrepared(p))
    assert.equal(p.attempt, 1)
    assert.equal(p.suspect, false)
  })
})

class FakePublisher {
  readonly sent: Array<{ exchange: string, key: string, message: Publishable }> = []
  /** Publishes to these routing keys fail this many more times (a nack, a missing queue). */
  readonly failing = new Map<string, number>()
  /** Publishes to these routing keys fail as the encoder fails them (a table it cannot write). */
  readonly unencodable = new Set<string>()
  attempts = 0
  /** Attempts by routing key. */
  readonly tries = new Map<string, number>()
  async publish (exchange: string, key: string, message: Publishable): Promise<void> {
    this.attempts++
    this.tries.set(key, (this.tries.get(key) ?? 0) + 1)
    if (this.unencodable.has(key)) throw new PublishError('header table too large', { cause: new RangeError('offset out of range') })
    const left = this.failing.get(key) ?? 0
    if (left > 0) {
      this.failing.set(key, left - 1)
      throw new PublishError(`no queue took the message (routing key '${key}')`, { cause: new UnroutableError(key) })
    }
    this.sent.push({ exchange, key, message })
  }
}

function settleDeps (over: Partial<SettleDeps> = {}): SettleDeps & { publisher: FakePublisher, expected: () => number } {
  let expected = 0
  const publisher = new FakePublisher()
  return Object.assign({ cfg, logger, metrics, publisher: publisher as unknown as Publisher, control: new ControlHeaders(null), inflight: new Inflight(), queue: 'unit_requests', expectSuspect: () => { expected++ }, tracing: null, unroutableWaits: new UnroutableWaits(8), ...over }, { publisher, expected: () => expected })
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const response = (status: number, headers: string[] = []): Extract<ForwardResult, { kind: 'response' }> => ({ kind: 'response', status, rawHeaders: headers.map((h) => Buffer.from(h)), body: Buffer.from('body') })

/** Settles one delivery whose publishes to its `replyTo` fail (no queue takes them) `failures` times first. */
async function settleFailingReplies (replyTo: string, failures: number, outcome: Outcome): Promise<{ deps: ReturnType<typeof settleDeps> } & ReturnType<typeof delivery>> {
  const deps = settleDeps()
  deps.publisher.failing.set(replyTo, failures)
  deps.inflight.enter()
  const delivered = delivery({ replyTo })
  await settle(deps, { d: delivered.d, outcome, req: null, result: outcome.kind === 'reply' ? outcome.result : null })
  await tick()
  return { deps, ...delivered }
}
const REDELIVERY_LIMIT: Outcome = { kind: 'dead_letter', reason: 'redelivery_limit', code: 'RQ_ERR_REDELIVERY_LIMIT', detail: 'delivered 3 times' }

describe('settle', () => {
  it('a reply: published to replyTo, acked once, the in-flight count released', async () => {
    const deps = settleDeps()
    deps.inflight.enter()
    const { d, ch } = delivery({ replyTo: 'amq.rabbitmq.reply-to.x' })
    await settle(deps, { d, outcome: { kind: 'reply', result: response(200, ['x-a', '1']) }, req: null, result: response(200) })
    await tick()
    assert.equal(deps.publisher.sent.length, 1)
    assert.equal(deps.publisher.sent[0]!.key, 'amq.rabbitmq.reply-to.x')
    assert.equal((deps.publisher.sent[0]!.message.options.headers as Record<string, unknown>)['x-a'], '1')
    assert.deepEqual(ch.acks, [d.msg.fields.deliveryTag])
    assert.equal(deps.inflight.count, 0)
  })
  it('a reply whose headers a broker message cannot carry becomes 502 RQ_ERR_REPLY_UNENCODABLE, acked', async () => {
    const deps = settleDeps()
    deps.inflight.enter()
    const { d, ch } = delivery({ replyTo: 'amq.rabbitmq.reply-to.x' })
    await settle(deps, { d, outcome: { kind: 'reply', result: response(200, [`x-${'n'.repeat(300)}`, 'v']) }, req: null, result: response(200) })
    await tick()
    const h = deps.publisher.sent[0]!.message.options.headers as Record<string, unknown>
    assert.equal(h['x-status-code'], '502')
    assert.equal(h['x-relayq-error'], 'RQ_ERR_REPLY_UNENCODABLE')
    assert.equal(ch.acks.length, 1)
  })
  it('a reply whose publish fails is tried again, the message held: the service is not called again, nothing goes back', async () => {
    const { deps, d, ch } = await settleFailingReplies('relayq_results.x', 2, { kind: 'reply', result: response(200) })
    assert.equal(deps.publisher.attempts, 3)
    assert.equal(deps.publisher.sent.length, 1)
    assert.deepEqual(ch.acks, [d.msg.fields.deliveryTag])
    assert.deepEqual(ch.nacks, [])
    assert.equal(deps.inflight.count, 0)
  })
  it('a publish that can never succeed (the encoder refused it) is not tried again: the message goes back', async () => {
    const deps = settleDeps()
    deps.publisher.unencodable.add('relayq_results.x')
    deps.inflight.enter()
    const { d, ch } = delivery({ replyTo: 'relayq_results.x' })
    await settle(deps, { d, outcome: { kind: 'reply', result: response(200) }, req: null, result: response(200) })
    assert.equal(deps.publisher.attempts, 1)
    assert.deepEqual([ch.acks, ch.nacks], [[], [d.msg.fields.deliveryTag]])
  })
  it('a publish that fails after the delivery\'s channel closed is not tried again: the broker has the message back', async () => {
    const deps = settleDeps()
    deps.publisher.failing.set('relayq_results.x', 5)
    deps.inflight.enter()
    const { d, ch } = delivery({ replyTo: 'relayq_results.x' })
    ch.emit('close')
    await settle(deps, { d, outcome: { kind: 'reply', result: response(200) }, req: null, result: response(200) })
    assert.equal(deps.publisher.attempts, 1)
    assert.deepEqual([ch.acks, ch.nacks], [[], []])
    assert.equal(deps.inflight.count, 0)
  })
  it('a dead-lettered job: its error reply goes to the results queue before the copy goes to the DLQ, and is tried again', async () => {
    const { deps, d, ch } = await settleFailingReplies('relayq_results.x', 1, REDELIVERY_LIMIT)
    assert.deepEqual(deps.publisher.sent.map((s) => s.key), ['relayq_results.x', 'unit_requests'])
    assert.equal((deps.publisher.sent[0]!.message.options.headers as Record<string, unknown>)['x-relayq-error'], 'RQ_ERR_REDELIVERY_LIMIT')
    assert.deepEqual(ch.acks, [d.msg.fields.deliveryTag])
  })
  it('a dead-lettered job whose results queue stays missing: the copy goes to the DLQ after a few seconds anyway, no loop', async () => {
    const { deps, d, ch } = await settleFailingReplies('relayq_results.gone', 100, REDELIVERY_LIMIT)
    assert.deepEqual(deps.publisher.sent.map((s) => s.key), ['unit_requests'])
    assert.deepEqual([ch.acks, ch.nacks], [[d.msg.fields.deliveryTag], []])
    // The reply four times (waits of 0.5, 1 and 2 s fit the 5 s budget for a missing queue), then the copy.
    assert.equal(deps.publisher.attempts, 5)
  })
  it('a reply whose queue stays missing: dead-lettered as reply_unroutable after the wait, acked, not given back to be called again', async () => {
    const { deps, d, ch } = await settleFailingReplies('relayq_results.gone', 100, { kind: 'reply', result: response(200) })
    // The reply four times (waits of 0.5, 1 and 2 s fit the 5 s budget for a missing queue), then the copy, and no
    // error reply to the missing queue.
    assert.equal(deps.publisher.tries.get('relayq_results.gone'), 4)
    assert.deepEqual(deps.publisher.sent.map((s) => [s.exchange, s.key]), [['relayq.dlx', 'unit_requests']])
    const h = deps.publisher.sent[0]!.message.options.headers as Record<string, unknown>
    assert.equal(h['x-relayq-dead-letter-reason'], 'reply_unroutable')
    assert.equal(h['x-relayq-last-error-code'], 'RQ_ERR_REPLY_UNROUTABLE')
    assert.deepEqual([ch.acks, ch.nacks], [[d.msg.fields.deliveryTag], []])
    assert.equal(deps.inflight.count, 0)
    assert.equal(deps.unroutableWaits.held, 0)
  })
  it('at most a quarter of the prefetch waits for missing queues: past that, a reply no queue takes is dead-lettered at once', async () => {
    const deps = settleDeps({ unroutableWaits: new UnroutableWaits(4) })
    deps.publisher.failing.set('gone.a', 100)
    deps.publisher.failing.set('gone.b', 100)
    const finished: string[] = []
    const run = (key: string): Promise<void> => {
      deps.inflight.enter()
      const { d } = delivery({ replyTo: key })
      return settle(deps, { d, outcome: { kind: 'reply', result: response(200) }, req: null, result: response(200) }).then(() => { finished.push(key) })
    }
    const a = run('gone.a')
    await tick()
    const b = run('gone.b')
    await b
    // The second found the one place taken: one try, straight to the dead-letter queue, while the first still waits.
    assert.deepEqual(finished, ['gone.b'])
    assert.equal(deps.publisher.tries.get('gone.b'), 1)
    assert.equal(deps.unroutableWaits.held, 1)
    await a
    assert.equal(deps.publisher.tries.get('gone.a'), 4)
    assert.equal(deps.unroutableWaits.held, 0)
    assert.equal(deps.publisher.sent.filter((s) => s.key === 'unit_requests').length, 2)
  })
  it('a recount: a copy with one more attempt and lost delivery, signed with a key, and one suspect expected back', async () => {
    const control = new ControlHeaders('k'.repeat(32))
    const deps = settleDeps({ control })
    deps.inflight.enter()
    const { d } = delivery({ redelivered: true })
    await settle(deps, { d, outcome: { kind: 'recount' }, req: null, result: null })
    const copy = deps.publisher.sent[0]!
    assert.equal(copy.key, 'unit_requests')
    const h = copy.message.options.headers as Record<string, unknown>
    assert.equal(Number(h['x-relayq-attempts']), 1)
    assert.equal(Number(h['x-relayq-lost-deliveries']), 1)
    assert.match(String(h[SIGNATURE_HEADER]), /^v1:/)
    assert.equal(deps.expected(), 1)
    // The signed copy reads back with its counts; tampered, it reads as a first attempt.
    const back = { ...d.msg, properties: { ...d.msg.properties, ...copy.message.options, headers: h } } as unknown as ConsumeMessage
    assert.deepEqual([control.counts(back, false).attempts, control.counts(back, false).lostDeliveries], [1, 1])
    h['x-relayq-lost-deliveries'] = 7
    assert.deepEqual([control.counts(back, false).attempts, control.counts(back, false).lostDeliveries], [0, 0])
  })
})

describe('batch answer split', () => {
  const keys = ['a', 'b']
  const answer = (body: unknown): ForwardResult => ({ kind: 'response', status: 200, rawHeaders: [], body: Buffer.from(JSON.stringify(body)) })
  const items = [
    { correlation_id: 'b', status: 'success', status_code: 201, headers: { 'x-b': '1' }, content: 'B' },
    { correlation_id: 'a', status: 'success', status_code: 200, body: Buffer.from('A').toString('base64'), body_encoding: 'base64' },
  ]
  for (const [shape, body] of [['a bare list', items], ['{responses: [...]}', { responses: items }], ['{results: [...]}', { results: items }]] as const) {
    it(`reads ${shape}, matching items by correlation_id`, () => {
      const [a, b] = split(answer(body), keys)
      assert.ok(a?.kind === 'response' && b?.kind === 'response')
      assert.equal(a.status, 200)
      assert.equal(a.body.toString(), 'A')
      assert.equal(b.status, 201)
      assert.equal(b.body.toString(), 'B')
      assert.deepEqual(b.rawHeaders.map(String), ['x-b', '1'])
    })
  }
  it('an item missing, an answer that is not JSON, a failed call: an error for those items', () => {
    const [a, b] = split(answer([items[0]]), keys)
    assert.equal(a?.kind, 'error')
    assert.equal(b?.kind, 'response')
    assert.deepEqual(split({ kind: 'response', status: 200, rawHeaders: [], body: Buffer.from('nope') }, keys).map((r) => r.kind), ['error', 'error'])
    const down: ForwardResult = { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_TIMEOUT', message: 'slow' }
    assert.deepEqual(split(down, keys), [down, down])
  })
  it('a failed item (status "error") answers 500 with its description; a status outside 200-599 becomes a 502', () => {
    const [a, b] = split(answer([{ correlation_id: 'a', status: 'error', detail: 'boom' }, { correlation_id: 'b', status_code: 101 }]), keys)
    assert.ok(a?.kind === 'response' && b?.kind === 'response')
    assert.equal(a.status, 500)
    assert.match(a.body.toString(), /boom/)
    assert.deepEqual(decideAfterAttempt(b, 1, cfg), { kind: 'error_reply', code: 'RQ_ERR_DOWNSTREAM_STATUS', detail: 'the service answered with status 101, which cannot be a final answer' })
  })
})

describe('careful mode (Isolation)', () => {
  const alone = (): boolean => true
  const notGivenBack = async (): Promise<void> => { assert.fail('a suspect that came alone was given back') }
  function isolation (quietMs = 50): { iso: Isolation, log: string[], inflight: Inflight } {
    const log: string[] = []
    const inflight = new Inflight()
    const iso = new Isolation({
      pauseConsuming: null,
      oneAtATime: async (on) => { log.push(`one:${on}`) },
      whenBusyAtMost: (n) => inflight.whenAtMost(n),
      busy: () => inflight.count,
      acksReceived: async () => { log.push('acks') },
      onChange: (careful) => log.push(`careful:${careful}`),
      quietMs,
    })
    return { iso, log, inflight }
  }

  it('a suspect waits for what is in flight, runs alone, and full concurrency returns when no suspect is expected', async () => {
    const { iso, log, inflight } = isolation()
    inflight.enter() // another message in flight
    inflight.enter() // the suspect
    let ran = false
    const done = iso.runAlone(async () => { ran = true; assert.equal(inflight.count, 1, 'ran beside another message') }, alone, notGivenBack)
    assert.equal(iso.holding, true)
    await tick()
    assert.equal(ran, false)
    inflight.leave()
    await done
    assert.equal(ran, true)
    assert.equal(iso.holding, false)
    assert.equal(iso.active, false)
    assert.deepEqual(log, ['careful:true', 'one:true', 'acks', 'careful:false', 'one:false'])
  })
  it('a suspect that came through the full consumer goes back (to return alone), and careful mode waits for it', async () => {
    const { iso, log } = isolation(60000)
    let ran = false
    let givenBack = 0
    // The give-back is a requeue of a suspect, which expects it back (settle does that).
    await iso.runAlone(async () => { ran = true }, () => false, async () => { givenBack++; iso.expect() })
    assert.equal(ran, false)
    assert.equal(givenBack, 1)
    assert.equal(iso.active, true, 'the suspect given back is still expected')
    assert.deepEqual(log, ['careful:true', 'one:true'])
    await iso.runAlone(async () => { ran = true }, alone, notGivenBack)
    assert.equal(ran, true)
    assert.equal(iso.active, false)
    iso.close()
  })
  it('a delivery that arrives while the acks are confirmed is waited for too: the suspect still runs alone', async () => {
    const inflight = new Inflight()
    let rounds = 0
    const iso = new Isolation({
      pauseConsuming: null,
      oneAtATime: async () => {},
      whenBusyAtMost: (n) => inflight.whenAtMost(n),
      busy: () => inflight.count,
      // The first round trip brings a straggler (a quorum queue's, to the consumer just cancelled); it settles later.
      acksReceived: async () => {
        if (++rounds === 1) {
          inflight.enter()
          setTimeout(() => inflight.leave(), 5)
        }
      },
      onChange: () => {},
      quietMs: 50,
    })
    inflight.enter() // the suspect
    let beside = -1
    await iso.runAlone(async () => { beside = inflight.count - 1 }, alone, notGivenBack)
    assert.equal(beside, 0, 'the suspect ran beside a straggler')
    assert.equal(rounds, 2)
  })
  it('stays careful while suspects it counted are still to come, and leaves once they have run', async () => {
    const { iso, log } = isolation(60000)
    iso.expect()
    iso.expect()
    await iso.runAlone(async () => {}, alone, notGivenBack)
    assert.equal(iso.active, true, 'one suspect is still expected')
    await iso.runAlone(async () => {}, alone, notGivenBack)
    assert.equal(iso.active, false)
    assert.deepEqual(log.filter((l) => l.startsWith('careful')), ['careful:true', 'careful:false'])
  })
  it('leaves after the quiet window when an expected suspect went elsewhere', async () => {
    const { iso } = isolation(30)
    iso.expect()
    iso.expect()
    await iso.runAlone(async () => {}, alone, notGivenBack)
    assert.equal(iso.active, true)
    await new Promise((resolve) => setTimeout(resolve, 80))
    assert.equal(iso.active, false)
    iso.close()
  })
})

describe('queue wait from a message timestamp', () => {
  const now = 1_800_000_000_000
  it('is the seconds since the timestamp, clock skew of up to a minute read as 0', () => {
    assert.equal(queueWaitSeconds(now / 1000 - 5, now), 5)
    assert.equal(queueWaitSeconds(now / 1000 + 30, now), 0)
    assert.equal(queueWaitSeconds(now / 1000 - 3 * 24 * 3600, now), 3 * 24 * 3600)
  })
  it('ignores a timestamp that is absent, not an integer, far in the future or from long ago (a forged one)', () => {
    for (const ts of [undefined, null, 0, -1, 1.5, '1800000000', now / 1000 + 3600, 1, Number.MAX_SAFE_INTEGER * 2, now / 1000 - 40 * 24 * 3600]) {
      assert.equal(queueWaitSeconds(ts, now), null, String(ts))
    }
  })
})
