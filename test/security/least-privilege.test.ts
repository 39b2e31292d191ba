// S12: relayq works under the least-privilege users deploy/rabbitmq documents,
// and those users cannot do more. A throwaway vhost on the shared broker gets
// the grants and policies of deploy/rabbitmq/definitions.json (the example
// service `orders` renamed to the test's), then a round trip, an async job, a
// retry and a dead-letter run under them, for classic queues under the policy
// (DEQUEUER_DECLARE_QUEUES=false) and quorum queues relayq declares.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import * as amqp from 'amqplib'
import { uniqueService } from '../helpers/broker'
import { echoJson, startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { listQueues, rabbitmqctl } from '../helpers/rabbitmqctl'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

interface Permission { user: string, configure: string, write: string, read: string }
interface Policy { name: string, pattern: string, 'apply-to': string, priority: number, definition: Record<string, unknown> }
const definitions = JSON.parse(readFileSync('deploy/rabbitmq/definitions.json', 'utf8')) as { permissions: Permission[], policies: Policy[] }
const documented = (user: string): Permission => {
  const p = definitions.permissions.find((x) => x.user === user)
  assert.ok(p !== undefined, `definitions.json has no permissions for ${user}`)
  return p
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

async function refusedWith403 (url: string, fn: (ch: amqp.Channel) => Promise<unknown>): Promise<string> {
  const conn = await amqp.connect(url)
  conn.on('error', () => {})
  try {
    const ch = await conn.createChannel()
    ch.on('error', () => {})
    await assert.rejects(fn(ch), /ACCESS_REFUSED|403/)
    return 'refused'
  } finally {
    await conn.close().catch(() => {})
  }
}

describe('S12: least-privilege broker users', () => {
  const tag = randomBytes(4).toString('hex')
  const vhost = `relayq-test-${tag}`
  const enqUser = `relayq-test-enq-${tag}`
  const users: string[] = [enqUser]
  const passwords = new Map<string, string>()
  const url = (user: string): string => `amqp://${user}:${passwords.get(user)!}@127.0.0.1:5672/${encodeURIComponent(vhost)}`
  let echo: Echo
  const running: Array<TestEnqueuer | TestDequeuer> = []

  async function addUser (name: string, perm: Permission, service?: string): Promise<void> {
    const pw = randomBytes(12).toString('hex')
    passwords.set(name, pw)
    await rabbitmqctl('add_user', name, pw)
    const adapt = (re: string): string => service === undefined ? re : re.replaceAll('orders', escape(service))
    await rabbitmqctl('set_permissions', '-p', vhost, name, adapt(perm.configure), adapt(perm.write), adapt(perm.read))
  }

  before(async () => {
    await rabbitmqctl('add_vhost', vhost)
    for (const p of definitions.policies) {
      await rabbitmqctl('set_policy', '-p', vhost, p.name, p.pattern, JSON.stringify(p.definition), '--apply-to', p['apply-to'], '--priority', String(p.priority))
    }
    await addUser(enqUser, documented('relayq-enqueuer'))
    echo = await startEcho(echoJson)
  })

  after(async () => {
    for (const r of running.reverse()) await r.close().catch(() => {})
    await echo?.close()
    // Deleting the vhost removes its queues, exchanges, policies and grants.
    await rabbitmqctl('delete_vhost', vhost).catch(() => {})
    for (const u of users) await rabbitmqctl('delete_user', u).catch(() => {})
  })

  it('the documented grants give no user a tag (no management access)', async () => {
    const list = await rabbitmqctl('list_users', '-q', '--no-table-headers')
    const line = list.split('\n').find((l) => l.startsWith(enqUser))
    assert.match(line ?? '', /\[\]/)
  })

  for (const [queueType, declareQueues] of [['classic', 'false'], ['quorum', 'true']] as const) {
    it(`${queueType} queues${declareQueues === 'false' ? ' under the policy (DEQUEUER_DECLARE_QUEUES=false)' : ' declared by relayq'}: round trip, async job, retry and dead-letter all work under the least-privilege users`, async () => {
      const service = uniqueService(`lp-${queueType}`)
      const deqUser = `relayq-test-deq-${queueType}-${tag}`
      users.push(deqUser)
      await addUser(deqUser, documented('relayq-orders'), service)
      // The first call of each path fails with 503, so a retry is needed; /always fails every time.
      const calls = new Map<string, number>()
      echo.behave((req, res) => {
        const n = (calls.get(req.url) ?? 0) + 1
        calls.set(req.url, n)
        if (req.url.startsWith('/always') || (req.url.startsWith('/retry') && n === 1)) {
          res.writeHead(503)
          res.end('not now')
          return
        }
        return echoJson(req, res)
      })
      const deq = await startTestDequeuer(service, echo.url, {
        RABBITMQ_URL: url(deqUser),
        DEQUEUER_QUEUE_TYPE: queueType,
        DEQUEUER_DECLARE_QUEUES: declareQueues,
        DEQUEUER_RETRY_STATUSES: '503',
        DEQUEUER_RETRY_DELAY_MS: '200',
        DEQUEUER_MAX_ATTEMPTS: '3',
        CIRCUIT_BREAKER_ENABLED: 'false',
        DLQ_POLL_INTERVAL_MS: '200',
      })
      running.push(deq)
      await deq.consuming
      const enq = await startTestEnqueuer({ RABBITMQ_URL: url(enqUser), ENQUEUER_REPLY_TIMEOUT: '20', ENQUEUER_BREAKER_ENABLED: 'false' })
      running.push(enq)

      const plain = await send(`${enq.url}/${service}/hello`, { method: 'POST', body: 'hi' })
      assert.equal(plain.status, 200, plain.body.toString())

      const retried = await send(`${enq.url}/${service}/retry`)
      assert.equal(retried.status, 200, retried.body.toString())
      assert.equal(calls.get('/retry'), 2)

      const job = await send(`${enq.url}/${service}/job`, { headers: { prefer: 'respond-async' } })
      assert.equal(job.status, 202, job.body.toString())
      const id = job.json<{ job_id: string }>().job_id
      const done = await waitFor(async () => {
        const j = (await send(`${enq.url}/jobs/${id}`)).json<{ status: string, result?: { status_code: number } }>()
        return j.status === 'pending' ? null : j
      }, { what: 'the job to complete' })
      assert.equal(done.status, 'completed')
      assert.equal(done.result?.status_code, 200)

      const failed = await send(`${enq.url}/${service}/always`)
      assert.equal(failed.status, 502)
      assert.equal(failed.headers['x-relayq-error'], 'RQ_ERR_DOWNSTREAM_STATUS')
      assert.equal(calls.get('/always'), 3)
      // The gauge is the dequeuer's own passive declare of the DLQ: the broker's count (quorum queues report theirs late to rabbitmqctl).
      await waitFor(async () => /dequeuer_dead_letter_queue_messages\{service="[^"]+"\} 1/.test((await send(`${deq.adminUrl}/metrics`)).body.toString()), { what: 'the dead letter in the DLQ' })

      const queues = await rabbitmqctl('list_queues', '-q', '--no-table-headers', '-p', vhost, 'name', 'type', 'policy')
      const row = (name: string): string[] => (queues.split('\n').find((l) => l.split('\t')[0] === name) ?? '').split('\t')
      assert.equal(row(`${service}_requests`)[1], queueType)
      assert.equal(row(`${service}_requests.dlq`)[1], queueType)
      // Classic queues get their dead-lettering from the documented policy, not from relayq's arguments.
      if (declareQueues === 'false') assert.equal(row(`${service}_requests`)[2], 'relayq-requests')
      assert.ok([...await listQueues(vhost)].some((q) => q.startsWith(`${service}_requests.retry.`)), 'a retry queue')

      // And no more than that: the enqueuer user reads no request queue, declares none, touches no DLQ.
      await refusedWith403(url(enqUser), (ch) => ch.consume(`${service}_requests`, () => {}))
      await refusedWith403(url(enqUser), (ch) => ch.get(`${service}_requests.dlq`))
      await refusedWith403(url(enqUser), (ch) => ch.assertQueue(`${service}x_requests`, { durable: true }))
      await refusedWith403(url(enqUser), (ch) => ch.purgeQueue(`${service}_requests`))
      // The dequeuer user of this service cannot reach another service's queues.
      await refusedWith403(url(deqUser), (ch) => ch.assertQueue(`${service}x_requests`, { durable: true }))
      await refusedWith403(url(deqUser), (ch) => ch.consume(`relayq_results.${'0'.repeat(12)}`, () => {}))
      await refusedWith403(url(deqUser), (ch) => ch.bindQueue(`${service}_requests.dlq`, 'amq.topic', '#'))
    })
  }
})
