// A rolling restart of a private three-node cluster under load, as an upgrade
// does it: each node shut down cleanly, started on its data, and back in the
// cluster before the next. About a minute of restarts, so it runs in
// `npm run test:cluster`, not in the default suite (test/fault/cluster-faults
// covers node kills there).
import { after, before, describe, it } from 'node:test'
import { ClusterRelay } from '../helpers/cluster-relay'

describe('rolling restart of a three-node cluster', () => {
  const relay = new ClusterRelay()
  before(async () => { await relay.start() })
  after(async () => { await relay.stop() })

  it('one node at a time, under load: nothing unaccounted, 200s again after', async () => {
    const { outcomes, at } = await relay.underLoad('rolling restart', async () => {
      for (const node of relay.cluster.nodes) {
        await node.ctl('shutdown')
        await relay.restart(node)
      }
    }, 4000)
    console.log(`# rolling restart: non-200 answers ${outcomes.filter((o) => o.status !== 200 && o.sentAt >= at).length}`)
    relay.recovery('rolling restart', outcomes, at)
  })
})
