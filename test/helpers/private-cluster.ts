// A private three-node RabbitMQ cluster for the cluster fault tests: three
// PrivateBroker nodes (own names, ports, data folders, the same cookie) and
// `rabbitmqctl join_cluster`. The shared broker on 5672 is never part of it.
// Each node runs one Erlang scheduler and never busy-waits, so the three fit
// a two-core machine next to the tests; stop() removes all of them, and the
// reaper kills them when the test file dies first.
import { PrivateBroker } from './private-broker'
import { waitFor } from './wait'

// One scheduler per node, and no busy-waiting schedulers: RabbitMQ's default
// spins idle schedulers, which three nodes on two cores would feel.
const SMALL_NODE = '+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none'

export class PrivateCluster {
  readonly nodes: PrivateBroker[]

  constructor (size = 3, extraConfig: string[] = []) {
    this.nodes = Array.from({ length: size }, () => new PrivateBroker(extraConfig, { erlArgs: SMALL_NODE }))
  }

  /** Every node's URL, comma-separated: a RABBITMQ_URL for the whole cluster. */
  get url (): string {
    return this.nodes.map((n) => n.url).join(',')
  }

  node (name: string): PrivateBroker {
    const found = this.nodes.find((n) => n.node === name)
    if (found === undefined) throw new Error(`no node ${name} in this cluster`)
    return found
  }

  async start (): Promise<void> {
    // Boot side by side (about 3 s each alone), then join the others to the first.
    for (const n of this.nodes) await n.launch()
    await Promise.all(this.nodes.map((n) => n.awaitStartup()))
    const [first, ...rest] = this.nodes as [PrivateBroker, ...PrivateBroker[]]
    for (const n of rest) {
      await n.ctl('stop_app')
      await n.ctl('join_cluster', first.node)
      await n.ctl('start_app')
    }
    await waitFor(async () => (await this.runningNodes(first)).length === this.nodes.length, { timeoutMs: 30000, intervalMs: 300, what: 'every node to join the cluster' })
  }

  /** The nodes `from` sees running. */
  async runningNodes (from: PrivateBroker): Promise<string[]> {
    const { stdout } = await from.ctl('cluster_status', '--formatter', 'json')
    return (JSON.parse(stdout) as { running_nodes: string[] }).running_nodes
  }

  /** Some node that is up, to ask for the cluster's state. */
  async anyUp (except: PrivateBroker[] = []): Promise<PrivateBroker> {
    for (const n of this.nodes) {
      if (except.includes(n)) continue
      try {
        await n.ctl('status')
        return n
      } catch { /* down: try the next */ }
    }
    throw new Error('no node of the cluster is up')
  }

  /** The node leading a quorum queue, or holding a classic one (the one that lists it as `--local`). */
  async queueNode (queue: string, except: PrivateBroker[] = []): Promise<PrivateBroker> {
    const asker = await this.anyUp(except)
    const { stdout } = await asker.ctl('list_queues', '-q', '--formatter', 'json', 'name', 'type', 'leader')
    const row = (JSON.parse(stdout) as Array<{ name: string, type: string, leader: string }>).find((q) => q.name === queue)
    if (row === undefined) throw new Error(`queue ${queue} not found`)
    if (row.type === 'quorum') return this.node(row.leader)
    for (const n of this.nodes) {
      if (except.includes(n)) continue
      const local = await n.ctl('list_queues', '-q', '--formatter', 'json', '--local', 'name').catch(() => ({ stdout: '[]' }))
      if ((JSON.parse(local.stdout) as Array<{ name: string }>).some((q) => q.name === queue)) return n
    }
    throw new Error(`no node holds queue ${queue}`)
  }

  /** The node each named client connection is on (list_connections is cluster-wide; the port it reached tells the node). */
  async connectionNodes (): Promise<Array<{ name: string, node: PrivateBroker }>> {
    const asker = await this.anyUp()
    const { stdout } = await asker.ctl('list_connections', '-q', '--formatter', 'json', 'port', 'client_properties')
    return (JSON.parse(stdout) as Array<{ port: number, client_properties: Array<[string, string, unknown]> }>).flatMap((row) => {
      const name = row.client_properties.find((p) => p[0] === 'connection_name')?.[2]
      const node = this.nodes.find((n) => n.port === row.port)
      return node === undefined ? [] : [{ name: typeof name === 'string' ? name : '?', node }]
    })
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()))
  }
}
