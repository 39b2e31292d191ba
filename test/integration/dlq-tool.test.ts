// The dead-letter reprocessor against a real dead-letter queue filled by a real dequeuer.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runDlqTool } from '../../src/dlq/cli'
import { AMQP_URL, connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { spawnRelay } from '../helpers/process'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function dlqWith (env: Record<string, string>, ...args: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await runDlqTool(args, { RABBITMQ_URL: AMQP_URL, ...env }, (s) => { out += s + '\n' }, (s) => { err += s + '\n' })
  return { code, out, err }
}

const dlq = async (...args: string[]): Promise<{ code: number, out: string, err: string }> => dlqWith({}, ...args)

/** What amqplib says about a missing queue; the tool must never show it. */
const RAW_AMQP = /Operation failed|NOT_FOUND|QueueDeclare|404/

describe('dlq reprocessor', () => {
  let broker: TestBroker
  let enq: TestEnqueuer
  let deq: TestDequeuer
  let echo: Echo
  let dir: string
  const service = uniqueService('dlqtool')
  const dlqName = `${service}_requests.dlq`
  const binary = randomBytes(4096)
  let servicePort = 0

  before(async () => {
    broker = await connectBroker()
    dir = mkdtempSync(join(tmpdir(), 'relayq-dlq-'))
    // The service is down (resets every connection) while the dead letters pile up.
    const down = net.createServer((s) => s.resetAndDestroy())
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve))
    servicePort = (down.address() as net.AddressInfo).port
    deq = await startTestDequeuer(service, `http://127.0.0.1:${servicePort}`, { DEQUEUER_MAX_ATTEMPTS: '2', DEQUEUER_RETRY_DELAY_MS: '100', CIRCUIT_BREAKER_ENABLED: 'false' })
    await deq.consuming
    enq = await startTestEnqueuer({ ENQUEUER_BREAKER_ENABLED: 'false' })
    const answers = await Promise.all([
      ...Array.from({ length: 4 }, (_, i) => send(`${enq.url}/${service}/orders/${i}`, { method: 'POST', body: `order ${i}`, headers: { authorization: 'Bearer secret-token-canary' } })),
      send(`${enq.url}/${service}/bin`, { method: 'PUT', body: binary, headers: { 'content-type': 'application/octet-stream' } }),
    ])
    for (const a of answers) assert.equal(a.status, 502)
    await broker.publish(`${service}_requests`, Buffer.from('?'), { messageId: 'bad-1', headers: { 'x-http-method': 'BREW' } })
    await waitFor(async () => (await broker.depth(dlqName)) === 6, { what: 'six dead letters' })
    await new Promise<void>((resolve) => down.close(() => resolve()))
  })

  after(async () => {
    await enq.close()
    await deq.close()
    await echo?.close()
    await broker.deleteService(service)
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('stats: depth, oldest age, counts by reason', async () => {
    const r = await dlq('stats', '--service', service, '--json')
    assert.equal(r.code, 0, r.err)
    const s = JSON.parse(r.out) as { depth: number, byReason: Record<string, number>, oldestAgeSeconds: number }
    assert.equal(s.depth, 6)
    assert.deepEqual(s.byReason, { max_attempts: 5, malformed: 1 })
    assert.ok(s.oldestAgeSeconds >= 0)
  })

  it('list and peek leave the queue as it was, in order', async () => {
    const first = await dlq('list', '--service', service, '--json')
    const second = await dlq('list', '--service', service, '--json')
    assert.equal(first.code, 0, first.err)
    // Ages are whole seconds and may tick over between the two reads; everything else must be equal.
    const sansAge = (out: string): unknown => (JSON.parse(out) as Array<Record<string, unknown>>).map(({ ageSeconds: _age, ...rest }) => rest)
    assert.deepEqual(sansAge(first.out), sansAge(second.out))
    const rows = JSON.parse(first.out) as Array<{ id: string, reason: string, attempts: number, method: string, path: string, size: number }>
    assert.equal(rows.length, 6)
    const order = rows.filter((r) => r.reason === 'max_attempts').map((r) => r.path)
    assert.equal(order.length, 5)
    assert.ok(rows.some((r) => r.method === 'PUT' && r.path === '/bin' && r.size === 4096 && r.attempts === 2))
    assert.equal(await broker.depth(dlqName), 6)
    const text = await dlq('list', '--service', service)
    assert.match(text.out, /reason=max_attempts\s+attempts=2\s+POST \/orders\/\d/)
  })

  it('peek shows bodies on request and redacts credentials', async () => {
    const r = await dlq('peek', '--service', service, '--reason', 'max_attempts', '--limit', '1', '--body', '--json')
    assert.equal(r.code, 0, r.err)
    const [d] = JSON.parse(r.out) as Array<{ headers: Record<string, unknown>, body: { encoding: string, body: string } }>
    assert.equal(d!.headers.authorization, '[redacted]')
    assert.doesNotMatch(r.out, /secret-token-canary/)
    assert.equal(d!.body.encoding, 'utf8')
    assert.match(d!.body.body, /^order \d$/)
    const shown = await dlq('peek', '--service', service, '--limit', '1', '--show-secrets', '--json')
    assert.match(shown.out, /secret-token-canary/)
    assert.equal(await broker.depth(dlqName), 6)
  })

  it('export then import round-trips every message byte for byte; purge empties the queue', async () => {
    const file = join(dir, 'dead.jsonl')
    const exp = await dlq('export', '--service', service, '--file', file)
    assert.equal(exp.code, 0, exp.err)
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    assert.equal(lines.length, 6)
    const before = (await broker.peekAll(dlqName)).map((m) => sha(m.content)).sort()
    assert.ok(before.includes(sha(binary)))
    assert.equal((await dlq('purge', '--service', service)).code, 2, 'purge needs --yes')
    assert.equal(await broker.depth(dlqName), 6)
    const purged = await dlq('purge', '--service', service, '--yes', '--json')
    assert.deepEqual(JSON.parse(purged.out), { purged: 6 })
    assert.equal(await broker.depth(dlqName), 0)
    const imp = await dlq('import', '--service', service, '--file', file, '--json')
    assert.deepEqual(JSON.parse(imp.out), { imported: 6 })
    const after = await broker.peekAll(dlqName)
    assert.deepEqual(after.map((m) => sha(m.content)).sort(), before)
    const restored = after.find((m) => sha(m.content) === sha(binary))!
    assert.equal((restored.properties.headers as Record<string, unknown>)['x-relayq-dead-letter-reason'], 'max_attempts')
  })

  it('replay to a missing queue fails with a clear message and moves nothing', async () => {
    const r = await dlq('replay', '--service', service, '--to', 'no_such_queue_here')
    assert.equal(r.code, 1)
    assert.match(r.err, /relayq dlq replay: queue no_such_queue_here does not exist \(named by --to\)/)
    assert.doesNotMatch(r.err, RAW_AMQP)
    assert.equal(await broker.depth(dlqName), 6)
  })

  it('an unknown service gets a clear message from every command, never amqplib\'s', async () => {
    const unknown = uniqueService('nosuch')
    for (const args of [['stats'], ['list'], ['replay'], ['purge', '--yes']]) {
      const r = await dlq(...args, '--service', unknown)
      assert.equal(r.code, 1, args.join(' '))
      assert.match(r.err, new RegExp(`queue ${unknown}_requests(\\.dlq)? does not exist \\(is ${unknown} the right service\\?`), r.err)
      assert.doesNotMatch(r.err, RAW_AMQP)
    }
  })

  it('refuses an unknown --reason and an invalid --service, naming what is wrong', async () => {
    const reason = await dlq('list', '--service', service, '--reason', 'nonsense')
    assert.equal(reason.code, 2)
    assert.match(reason.err, /--reason "nonsense" is not a dead-letter reason; one of max_attempts, malformed, /)
    const name = await dlq('stats', '--service', 'a b')
    assert.equal(name.code, 2)
    assert.match(name.err, /--service "a b" is not a valid service name/)
    assert.doesNotMatch(name.err, /is required/)
    const missing = await dlq('stats')
    assert.equal(missing.code, 2)
    assert.match(missing.err, /--service NAME is required \(or SERVICE_NAME\)/)
  })

  it('SERVICE_NAME is the default --service', async () => {
    const r = await dlqWith({ SERVICE_NAME: service }, 'stats', '--json')
    assert.equal(r.code, 0, r.err)
    assert.equal(JSON.parse(r.out).queue, dlqName)
    const bad = await dlqWith({ SERVICE_NAME: 'amq.x' }, 'stats')
    assert.equal(bad.code, 2)
    assert.match(bad.err, /SERVICE_NAME "amq.x" is not a valid service name/)
  })

  it('replay after the service is fixed serves the messages and leaves the others', async () => {
    echo = await startEcho((req, res) => { res.writeHead(200); res.end(req.body) })
    await deq.close()
    deq = await startTestDequeuer(service, echo.url, { DEQUEUER_MAX_ATTEMPTS: '2', DEQUEUER_RETRY_DELAY_MS: '100' })
    await deq.consuming
    const debug = `${service}_debug`
    const ch = await broker.channel()
    await ch.assertQueue(debug, { durable: false, autoDelete: false })
    const one = await dlq('replay', '--service', service, '--id', 'bad-1', '--to', debug, '--json')
    assert.deepEqual(JSON.parse(one.out), { moved: 1, kept: 5, failed: 0 })
    const parked = await broker.drain(debug)
    assert.equal(parked.length, 1)
    assert.equal(parked[0]!.properties.messageId, 'bad-1')
    await ch.deleteQueue(debug)
    await ch.close()
    const r = await dlq('replay', '--service', service, '--reason', 'max_attempts', '--json')
    assert.equal(r.code, 0, r.err)
    assert.deepEqual(JSON.parse(r.out), { moved: 5, kept: 0, failed: 0 })
    await waitFor(() => echo.received.length === 5, { what: 'the replayed requests to be served' })
    assert.deepEqual(echo.received.map((x) => x.url).sort(), ['/bin', '/orders/0', '/orders/1', '/orders/2', '/orders/3'])
    assert.ok(echo.received.some((x) => sha(x.body) === sha(binary)))
    await waitFor(async () => (await broker.depth(`${service}_requests`)) === 0)
    const left = await dlq('stats', '--service', service, '--json')
    assert.equal(JSON.parse(left.out).depth, 0)
  })

  it('the bundle runs the tool with meaningful exit codes', async () => {
    const usage = spawnRelay({}, { args: ['dlq', 'stats'] })
    assert.equal((await usage.exited).code, 2)
    assert.match(usage.output(), /--service NAME is required/)
    const ok = spawnRelay({}, { args: ['dlq', 'stats', '--service', service, '--json'] })
    assert.equal((await ok.exited).code, 0, ok.output())
    assert.equal(JSON.parse(ok.output()).depth, 0)
    const down = spawnRelay({ RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' }, { args: ['dlq', 'stats', '--service', service] })
    assert.equal((await down.exited).code, 1)
  })
})
