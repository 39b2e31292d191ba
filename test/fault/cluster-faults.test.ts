// relayq on a private three-node RabbitMQ cluster (issue 18): kill -9 of the
// node leading the service's quorum queue, of the node the enqueuer is
// connected to, and of one a dequeuer consumes from, under steady load; async
// jobs across a node kill; and a classic queue whose node is down. Every
// request is accounted for (ledger); each killed node is started again
// before the next test. The rolling restart, longer, is in test/cluster/.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { ClusterRelay } from '../helpers/cluster-relay'
import { send } from '../helpers/http'
import { sleep, waitFor } from '../helpers/wait'

describe('relayq on a three-node cluster', () => {
  const relay = new ClusterRelay()
  const { cluster, service, classic } = relay
  const underLoad = relay.underLoad.bind(relay)
  const recovery = relay.recovery.bind(relay)
  const restart = relay.restart.bind(relay)

  before(async () => { await relay.start() })
  after(async () => { await relay.stop() })

  it('connections are spread over the nodes', async () => {
    const conns = await waitFor(async () => {
      const c = await cluster.connectionNodes()
      return c.length >= 5 ? c : null
    }, { what: 'every relayq connection to show up' })
    const nodes = new Set(conns.map((c) => c.node.node))
    console.log(`# connections per node: ${cluster.nodes.map((n) => conns.filter((c) => c.node === n).length).join(' / ')}`)
    // Five or more connections each starting at a random node of three: all on one node has odds of 3/3^5 or less.
    assert.ok(nodes.size >= 2, `all ${conns.length} connections on one node`)
  })

  it('kill -9 of the node leading the quorum queue under load: nothing unaccounted, 200s again', async () => {
    const leader = await cluster.queueNode(`${service}_requests`)
    // The node comes back even when an assertion fails, so one failure does not fail the tests after it.
    try {
      const { outcomes, at } = await underLoad('leader kill', () => leader.kill())
      recovery('leader kill', outcomes, at)
    } finally {
      await restart(leader)
    }
  })

  it('kill -9 of the node the enqueuer is connected to: it reconnects to another and serves', async () => {
    const conns = await cluster.connectionNodes()
    const node = conns.find((c) => c.name === 'relayq-enqueuer')?.node
    assert.ok(node !== undefined, 'the enqueuer connection')
    try {
      const { outcomes, at } = await underLoad('enqueuer node kill', () => node.kill())
      recovery('enqueuer node kill', outcomes, at)
    } finally {
      await restart(node)
    }
  })

  it('kill -9 of a node a dequeuer consumes from: it consumes on another, nothing unaccounted', async () => {
    const conns = await cluster.connectionNodes()
    const enqNode = conns.find((c) => c.name === 'relayq-enqueuer')?.node
    const consumers = conns.filter((c) => c.name === 'relayq-consume')
    const node = (consumers.find((c) => c.node !== enqNode) ?? consumers[0])?.node
    assert.ok(node !== undefined, 'a consuming connection')
    try {
      const { outcomes, at } = await underLoad('dequeuer node kill', () => node.kill())
      recovery('dequeuer node kill', outcomes, at)
    } finally {
      await restart(node)
    }
  })

  it('async jobs across a node kill: every 202 ends with a result', async () => {
    const results = relay.enq.context.jobs!.resultsQueue
    const node = await cluster.queueNode(results)
    // Each job's body is its own id, so the service's ledger tells whether a job still pending ever ran.
    const accepted: Array<{ id: string, body: string }> = []
    const refused: Record<string, number> = {}
    try {
      let stop = false
      const submit = (async () => {
        while (!stop) {
          const body = randomUUID()
          const res = await send(`${relay.enq.url}/${service}/job`, { method: 'POST', body, headers: { prefer: 'respond-async' } }).catch(() => null)
          if (res?.status === 202) accepted.push({ id: res.json<{ job_id: string }>().job_id, body })
          else { const k = String(res?.headers['x-relayq-error'] ?? res?.status ?? 'no answer'); refused[k] = (refused[k] ?? 0) + 1 }
          await sleep(50)
        }
      })()
      await sleep(2000)
      await node.kill()
      await sleep(8000)
      stop = true
      await submit
      const outcomes = new Map<string, string>()
      const pending = await waitUntilNone(async () => {
        const left = []
        for (const job of accepted) {
          if (outcomes.has(job.id)) continue
          const r = (await send(`${relay.enq.url}/jobs/${job.id}`)).json<{ status: string }>()
          if (r.status === 'pending') left.push(job)
          else outcomes.set(job.id, r.status)
        }
        return left
      }, 45000)
      if (pending.length > 0) {
        const which = pending.slice(0, 5).map((j) => `${j.id} (executed ${relay.ledger.executions.get(j.body) ?? 0} times)`).join(', ')
        assert.fail(`${pending.length} of ${accepted.length} jobs still pending 45 s after the load: ${which}\n${await relay.diagnose([node])}`)
      }
      const completed = [...outcomes.values()].filter((s) => s === 'completed').length
      console.log(`# async jobs, results-queue leader killed: 202 ${accepted.length}, completed ${completed}, refused ${JSON.stringify(refused)}`)
      assert.equal(completed, accepted.length, JSON.stringify(Object.fromEntries(outcomes)))
      assert.ok(accepted.length > 50)
    } finally {
      await restart(node)
    }
  })

  it('a classic queue whose node is down: 503 RQ_ERR_QUEUE_UNAVAILABLE at once, not a timeout', async () => {
    // The enqueuer has served this service: RabbitMQ's 404 for a queue on a dead node is the same as for a deleted
    // one, and relayq tells them apart by having seen the queue (queue-check.ts).
    assert.equal((await send(`${relay.enq.url}/${classic}/x`, { method: 'POST', body: 'x' })).status, 200)
    const node = await cluster.queueNode(`${classic}_requests`)
    await node.kill()
    try {
      const res = await waitFor(async () => {
        const r = await send(`${relay.enq.url}/${classic}/x`, { method: 'POST', body: 'x' })
        return r.headers['x-relayq-error'] === 'RQ_ERR_QUEUE_UNAVAILABLE' ? r : null
      }, { timeoutMs: 15000, intervalMs: 200, what: 'the queue to be reported unavailable' })
      assert.equal(res.status, 503)
      const t0 = performance.now()
      const again = await send(`${relay.enq.url}/${classic}/x`, { method: 'POST', body: 'x' })
      const ms = performance.now() - t0
      console.log(`# classic queue on a dead node: ${again.status} ${String(again.headers['x-relayq-error'])} in ${ms.toFixed(0)} ms`)
      assert.equal(again.headers['x-relayq-error'], 'RQ_ERR_QUEUE_UNAVAILABLE')
      assert.ok(ms < 5000, `answered in ${ms} ms`)
    } finally {
      await restart(node)
    }
  })
})

/** Calls `probe` until it returns nothing left or `timeoutMs` passes; returns what is left. */
async function waitUntilNone<T> (probe: () => Promise<T[]>, timeoutMs: number): Promise<T[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = await probe()
    if (left.length === 0 || Date.now() > deadline) return left
    await sleep(500)
  }
}
