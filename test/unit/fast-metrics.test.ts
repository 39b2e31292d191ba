// Guard test for relayq's reach into prom-client (src/metrics/fast.ts): its
// metrics are duck-typed objects handed to Registry.registerMetric, exported
// through a `get()` that returns prom-client's internal {name, help, type,
// values, aggregator} shape with `metricName` on histogram rows. These tests
// compare the exposition and the cluster aggregation with prom-client's own
// metrics, so an upgrade that changes that shape fails here, not in production.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import client, { AggregatorRegistry, Registry } from 'prom-client'
import { FastCounter, FastHistogram } from '../../src/metrics/fast'

const PINNED = '15.1.3'

describe('fast metrics', () => {
  it('run against the pinned prom-client (re-check fast.ts when upgrading)', () => {
    const pkg = createRequire(__filename)('prom-client/package.json') as { version: string }
    assert.equal(pkg.version, PINNED, `prom-client ${pkg.version} is installed; metrics/fast.ts was verified against ${PINNED}`)
  })

  it('expose exactly what prom-client would for the same observations', async () => {
    const fast = new Registry()
    const slow = new Registry()
    const fc = new FastCounter(fast, 'x_total', 'help x', ['service', 'code'])
    const sc = new client.Counter({ name: 'x_total', help: 'help x', labelNames: ['service', 'code'], registers: [slow] })
    const buckets = [0.001, 0.01, 0.1, 1, 120]
    const fh = new FastHistogram(fast, 'lat_seconds', 'help lat', ['service'], buckets)
    const sh = new client.Histogram({ name: 'lat_seconds', help: 'help lat', labelNames: ['service'], buckets, registers: [slow] })
    const values = [0, 0.0005, 0.001, 0.002, 0.05, 0.5, 1, 2, 119, 121, 500]
    for (const [i, v] of values.entries()) {
      const svc = i % 2 === 0 ? 'a' : 'b'
      fc.labels(svc, String(i % 3)).inc()
      sc.labels(svc, String(i % 3)).inc()
      fh.labels(svc).observe(v)
      sh.labels(svc).observe(v)
    }
    fc.labels('a', '0').inc(5)
    sc.labels('a', '0').inc(5)
    const norm = (text: string): string => text.split('\n').sort().join('\n')
    assert.equal(norm(await fast.metrics()), norm(await slow.metrics()))
  })

  it('sum across cluster workers like prom-client metrics', async () => {
    const worker = (n: number): Promise<unknown> => {
      const r = new Registry()
      const c = new FastCounter(r, 'y_total', 'help y', ['service'])
      const h = new FastHistogram(r, 'z_seconds', 'help z', ['service'], [1, 10])
      c.labels('s').inc(n)
      h.labels('s').observe(n)
      return r.getMetricsAsJSON()
    }
    const merged = AggregatorRegistry.aggregate([await worker(2), await worker(20)] as never)
    const text = await merged.metrics()
    assert.match(text, /y_total\{service="s"\} 22/)
    assert.match(text, /z_seconds_bucket\{le="10",service="s"\} 1/)
    assert.match(text, /z_seconds_count\{service="s"\} 2/)
    assert.match(text, /z_seconds_sum\{service="s"\} 22/)
  })
})
