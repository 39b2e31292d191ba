// relayq on a private three-node RabbitMQ cluster (issue 18): kill -9 of the
// node leading the service's quorum queue, and of the node the enqueuer is
// connected to, under steady load; async jobs across a node kill; and a
// classic queue whose node is down. Every request is accounted for (ledger);
// each killed node is started again before the next test.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { describeAccounting, Load, ServiceLedger, type Outcome } from '../helpers/ledger'
import type { PrivateBroker } from '../helpers/private-broker'
import { PrivateCluster } from '../helpers/private-cluster'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from '../helpers/relay'
import { sleep, waitFor } from '../helpers/wait'

// Load low enough for three Erlang nodes, relayq and the client on two busy cores.
const RATE = 40

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

describe('relayq on a three-node cluster', () => {
  const cluster = new PrivateCluster()
  const service = 'clustered'
  const classic = 'pinned'
  let echo: Echo
  let ledger: ServiceLedger
  let enq: TestEnqueuer
  const dequeuers: TestDequeuer[] = []

  before(async () => {
    await cluster.start()
    ledger = new ServiceLedger()
    echo = await startEcho(ledger.behaviour())
    const common = { RABBITMQ_URL: cluster.url, RABBITMQ_HEARTBEAT_SECONDS: '2', RABBITMQ_RECONNECT_MAX_MS: '500' }
    for (let i = 0; i < 2; i++) {
      const d = await startTestDequeuer(service, echo.url, { ...common, DEQUEUER_QUEUE_TYPE: 'quorum' })
      await d.consuming
      dequeuers.push(d)
    }
    const c = await startTestDequeuer(classic, echo.url, { ...common, DEQUEUER_QUEUE_TYPE: 'classic' })
    await c.consuming
    dequeuers.push(c)
    enq = await startTestEnqueuer({ ...common, ENQUEUER_PUBLISH_TIMEOUT_MS: '1000', ENQUEUER_REPLY_TIMEOUT: '10', ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_RESULTS_QUEUE_TYPE: 'quorum' })
  })

  after(async () => {
    await enq?.close()
    for (const d of dequeuers) await d.close()
    await echo?.close()
    await cluster.stop()
  })

  /** Steady load while `fault` runs, then `settleMs` more; returns the outcomes and when the fault struck. */
  async function underLoad (name: string, fault: () => Promise<void>, settleMs = 10000): Promise<{ outcomes: Outcome[], at: number }> {
    const load = new Load(() => `${enq.url}/${service}/x`)
    const done = load.steady(RATE, 120000)
    await sleep(2000)
    const at = Date.now()
    await fault()
    await sleep(settleMs)
    load.stop()
    await done
    await load.close()
    const acc = load.account(ledger)
    console.log(`# ${describeAccounting(name, acc)}`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0, acc.unaccountedIds.join(','))
    return { outcomes: load.outcomes, at }
  }

  /** How long until answers are 200 again after `at`, and the latency of the requests sent in between. */
  function recovery (name: string, outcomes: Outcome[], at: number): void {
    const lastBad = Math.max(at, ...outcomes.filter((o) => o.status !== 200 && o.sentAt >= at).map((o) => o.sentAt))
    const okAfter = outcomes.filter((o) => o.sentAt > lastBad && o.status === 200)
    assert.ok(okAfter.length > 0, 'answered 200 again after the fault')
    const spanning = outcomes.filter((o) => o.sentAt >= at - 1000 && o.sentAt <= lastBad).map((o) => o.ms)
    const backAt = Math.min(...okAfter.map((o) => o.sentAt + o.ms))
    console.log(`# ${name}: 200s again ${backAt - at} ms after the kill; last non-200 sent ${lastBad - at} ms after; spanning requests ${spanning.length}, p50 ${percentile(spanning, 0.5).toFixed(0)} ms, p99 ${percentile(spanning, 0.99).toFixed(0)} ms`)
    // Every request after the fault window was served.
    for (const o of outcomes.filter((x) => x.sentAt > lastBad)) assert.equal(o.status, 200)
  }

  async function restart (node: PrivateBroker): Promise<void> {
    await node.restart()
    await waitFor(async () => (await cluster.runningNodes(node)).length === 3, { timeoutMs: 30000, intervalMs: 300, what: 'the node to rejoin' })
    await waitFor(async () => (await send(`${enq.url}/readyz`)).status === 200, { what: 'the enqueuer to be ready' })
  }

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
    const { outcomes, at } = await underLoad('leader kill', () => leader.kill())
    recovery('leader kill', outcomes, at)
    await restart(leader)
  })

  it('kill -9 of the node the enqueuer is connected to: it reconnects to another and serves', async () => {
    const conns = await cluster.connectionNodes()
    const node = conns.find((c) => c.name === 'relayq-enqueuer')?.node
    assert.ok(node !== undefined, 'the enqueuer connection')
    const { outcomes, at } = await underLoad('enqueuer node kill', () => node.kill())
    recovery('enqueuer node kill', outcomes, at)
    await restart(node)
  })

  it('async jobs across a node kill: every 202 ends with a result', async () => {
    const results = enq.context.jobs!.resultsQueue
    const node = await cluster.queueNode(results)
    const accepted: string[] = []
    const refused: Record<string, number> = {}
    let stop = false
    const submit = (async () => {
      while (!stop) {
        const res = await send(`${enq.url}/${service}/job`, { method: 'POST', body: 'j', headers: { prefer: 'respond-async' } }).catch(() => null)
        if (res?.status === 202) accepted.push(res.json<{ job_id: string }>().job_id)
        else { const k = String(res?.headers['x-relayq-error'] ?? res?.status ?? 'no answer'); refused[k] = (refused[k] ?? 0) + 1 }
        await sleep(50)
      }
    })()
    await sleep(2000)
    await node.kill()
    await sleep(8000)
    stop = true
    await submit
    let completed = 0
    for (const id of accepted) {
      const j = await waitFor(async () => {
        const r = (await send(`${enq.url}/jobs/${id}`)).json<{ status: string }>()
        return r.status === 'pending' ? null : r
      }, { timeoutMs: 30000, what: `job ${id} to end` })
      assert.equal(j.status, 'completed', JSON.stringify(j))
      completed++
    }
    console.log(`# async jobs, results-queue leader killed: 202 ${accepted.length}, completed ${completed}, refused ${JSON.stringify(refused)}`)
    assert.ok(accepted.length > 50)
    await restart(node)
  })

  it('a classic queue whose node is down: 503 RQ_ERR_QUEUE_UNAVAILABLE at once, not a timeout', async () => {
    const node = await cluster.queueNode(`${classic}_requests`)
    await node.kill()
    try {
      const res = await waitFor(async () => {
        const r = await send(`${enq.url}/${classic}/x`, { method: 'POST', body: 'x' })
        return r.headers['x-relayq-error'] === 'RQ_ERR_QUEUE_UNAVAILABLE' ? r : null
      }, { timeoutMs: 15000, intervalMs: 200, what: 'the queue to be reported unavailable' })
      assert.equal(res.status, 503)
      const t0 = performance.now()
      const again = await send(`${enq.url}/${classic}/x`, { method: 'POST', body: 'x' })
      const ms = performance.now() - t0
      console.log(`# classic queue on a dead node: ${again.status} ${String(again.headers['x-relayq-error'])} in ${ms.toFixed(0)} ms`)
      assert.equal(again.headers['x-relayq-error'], 'RQ_ERR_QUEUE_UNAVAILABLE')
      assert.ok(ms < 5000, `answered in ${ms} ms`)
    } finally {
      await restart(node)
    }
  })
})
