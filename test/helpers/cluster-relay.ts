// relayq on a PrivateCluster, for the cluster fault tests: two dequeuers of a
// quorum-queue service, one of a classic-queue service, and one enqueuer (its
// results queue quorum), all in-process with RABBITMQ_URL listing the three
// nodes; plus the steady load, its ledger, and the recovery figures.
import assert from 'node:assert/strict'
import { startEcho, type Echo } from './echo'
import { send } from './http'
import { describeAccounting, Load, ServiceLedger, type Outcome } from './ledger'
import type { PrivateBroker } from './private-broker'
import { PrivateCluster } from './private-cluster'
import { startTestDequeuer, startTestEnqueuer, type TestDequeuer, type TestEnqueuer } from './relay'
import { sleep, waitFor } from './wait'

// Load low enough for three Erlang nodes, relayq and the client on two busy cores.
const RATE = 40
/** ENQUEUER_PUBLISH_TIMEOUT_MS of these tests. */
export const PUBLISH_TIMEOUT_MS = 1000

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

export class ClusterRelay {
  readonly cluster = new PrivateCluster()
  readonly service = 'clustered'
  readonly classic = 'pinned'
  readonly ledger = new ServiceLedger()
  enq!: TestEnqueuer
  private echo: Echo | null = null
  private readonly dequeuers: TestDequeuer[] = []

  async start (): Promise<void> {
    await this.cluster.start()
    const echo = this.echo = await startEcho(this.ledger.behaviour())
    // Info: consuming, stopped consuming and recoveries go into the report of a failed test.
    const common = { LOG_LEVEL: 'info', RABBITMQ_URL: this.cluster.url, RABBITMQ_HEARTBEAT_SECONDS: '2', RABBITMQ_RECONNECT_MAX_MS: '500' }
    for (const [service, type] of [[this.service, 'quorum'], [this.service, 'quorum'], [this.classic, 'classic']] as const) {
      const d = await startTestDequeuer(service, echo.url, { ...common, DEQUEUER_QUEUE_TYPE: type })
      await d.consuming
      this.dequeuers.push(d)
    }
    this.enq = await startTestEnqueuer({ ...common, ENQUEUER_PUBLISH_TIMEOUT_MS: String(PUBLISH_TIMEOUT_MS), ENQUEUER_REPLY_TIMEOUT: '10', ENQUEUER_BREAKER_ENABLED: 'false', ASYNC_RESULTS_QUEUE_TYPE: 'quorum' })
  }

  async stop (): Promise<void> {
    await this.enq?.close()
    for (const d of this.dequeuers) await d.close()
    await this.echo?.close()
    await this.cluster.stop()
  }

  /** Steady load while `fault` runs, then `settleMs` more; asserts the ledger and returns the outcomes and when the fault began. */
  async underLoad (name: string, fault: () => Promise<void>, settleMs = 10000): Promise<{ outcomes: Outcome[], at: number }> {
    const load = new Load(() => `${this.enq.url}/${this.service}/x`)
    const done = load.steady(RATE, 180000)
    await sleep(2000)
    const at = Date.now()
    await fault()
    await sleep(settleMs)
    load.stop()
    await done
    await load.close()
    const acc = load.account(this.ledger)
    console.log(`# ${describeAccounting(name, acc)}`)
    assert.equal(acc.mismatched, 0)
    assert.equal(acc.unaccounted, 0, acc.unaccountedIds.join(','))
    return { outcomes: load.outcomes, at }
  }

  /** Logs how long until answers were 200 again after `at`, and the latency of the requests sent in between; asserts none hung. */
  recovery (name: string, outcomes: Outcome[], at: number): void {
    const lastBad = Math.max(at, ...outcomes.filter((o) => o.status !== 200 && o.sentAt >= at).map((o) => o.sentAt))
    const okAfter = outcomes.filter((o) => o.sentAt > lastBad && o.status === 200)
    assert.ok(okAfter.length > 0, 'answered 200 again after the fault')
    const spanning = outcomes.filter((o) => o.sentAt >= at - 1000 && o.sentAt <= lastBad).map((o) => o.ms)
    const backAt = Math.min(...okAfter.map((o) => o.sentAt + o.ms))
    console.log(`# ${name}: 200s again ${backAt - at} ms after the fault began; last non-200 sent ${lastBad - at} ms after; spanning requests ${spanning.length}, p50 ${percentile(spanning, 0.5).toFixed(0)} ms, p99 ${percentile(spanning, 0.99).toFixed(0)} ms, max ${Math.max(...spanning).toFixed(0)} ms`)
    for (const o of outcomes.filter((x) => x.sentAt > lastBad)) assert.equal(o.status, 200)
    // Never a hang: a publish an election left unconfirmed is answered within the publish timeout (plus a busy machine's margin).
    for (const o of outcomes) {
      if (o.code === 'RQ_ERR_PUBLISH_TIMEOUT' || o.code === 'RQ_ERR_PUBLISH_NACKED' || o.code === 'RQ_ERR_BROKER_UNAVAILABLE') assert.ok(o.ms < PUBLISH_TIMEOUT_MS + 2000, `${o.code} after ${o.ms} ms`)
    }
  }

  /**
   * What a failed test needs to say why: each queue's leader, members, counts
   * and consumers, the last warnings of every relayq component, and the
   * brokers' log lines about relayq's queues.
   */
  async diagnose (except: PrivateBroker[] = []): Promise<string> {
    const asker = await this.cluster.anyUp(except)
    const queues = await asker.ctl('list_queues', '-q', '--formatter', 'json', 'name', 'type', 'leader', 'online', 'messages_ready', 'messages_unacknowledged', 'consumers')
      .then((r) => r.stdout, (err: Error) => `list_queues failed: ${err.message}`)
    const logs = [['enqueuer', this.enq.logs], ...this.dequeuers.map((d, i) => [`dequeuer ${i}`, d.logs] as const)] as const
    const tail = logs.map(([name, l]) => `${name}:\n${l.lines.slice(-30).map((x) => `  ${JSON.stringify(x)}`).join('\n')}`)
    // Each dequeuer's own counts (in flight, consuming, prefetch, outcomes) from its metrics.
    const counts = await Promise.all(this.dequeuers.map(async (d, i) => {
      const text = await send(`${d.adminUrl}/metrics`).then((r) => r.body.toString(), (err: Error) => `metrics failed: ${err.message}`)
      const lines = text.split('\n').filter((l) => /^(dequeuer|relayq)_/.test(l) && !/_(bucket|sum|count|created)\{/.test(l))
      return `dequeuer ${i} metrics:\n${lines.map((l) => `  ${l}`).join('\n')}`
    }))
    const brokerLogs = this.cluster.nodes.map((n) => `broker ${n.node}:\n${n.logLines((l) => /relayq_results|_requests'|\[error\]|\[warning\]/.test(l), 25).map((l) => `  ${l}`).join('\n')}`)
    return `queues: ${queues}\n${tail.join('\n')}\n${counts.join('\n')}\n${brokerLogs.join('\n')}`
  }

  /** A cold start of `node` on its data; resolves once it is back in the cluster and the enqueuer is ready. */
  async restart (node: PrivateBroker): Promise<void> {
    await node.restart()
    await waitFor(async () => (await this.cluster.runningNodes(node)).length === this.cluster.nodes.length, { timeoutMs: 30000, intervalMs: 300, what: 'the node to rejoin' })
    await waitFor(async () => (await send(`${this.enq.url}/readyz`)).status === 200, { what: 'the enqueuer to be ready' })
  }
}
