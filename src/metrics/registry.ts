// The Prometheus registry of one process: Node's default process metrics
// (unprefixed, so the common Node.js dashboards work), relayq_build_info, and
// helpers that keep hot-path updates cheap by caching labelled children.
import client, { Registry } from 'prom-client'
import { VERSION } from '../version'

export { Registry }

export function createRegistry (mode: string): Registry {
  const registry = new Registry()
  client.collectDefaultMetrics({ register: registry })
  const info = new client.Gauge({
    name: 'relayq_build_info',
    help: 'relayq version and mode; always 1.',
    labelNames: ['version', 'mode', 'node'],
    registers: [registry],
    aggregator: 'first',
  })
  info.set({ version: VERSION, mode, node: process.version }, 1)
  return registry
}

/** Buckets from 1 ms up to (and including) the longest wait this process allows. */
export function latencyBuckets (maxSeconds: number): number[] {
  const base = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
  const out = base.filter((b) => b < maxSeconds)
  out.push(maxSeconds)
  return out
}

interface Labelled<C> { labels: (...values: string[]) => C }

/** metric.labels(...) hashes its arguments on every call; this caches one child per label tuple. */
export function children1<C> (metric: Labelled<C>): (a: string) => C {
  const cache = new Map<string, C>()
  return (a) => {
    let child = cache.get(a)
    if (child === undefined) {
      child = metric.labels(a)
      cache.set(a, child)
    }
    return child
  }
}

export function children2<C> (metric: Labelled<C>): (a: string, b: string) => C {
  const cache = new Map<string, Map<string, C>>()
  return (a, b) => {
    let inner = cache.get(a)
    if (inner === undefined) {
      inner = new Map()
      cache.set(a, inner)
    }
    let child = inner.get(b)
    if (child === undefined) {
      child = metric.labels(a, b)
      inner.set(b, child)
    }
    return child
  }
}

/** Replaces every method of a metrics object with a no-op, for METRICS_ENABLED=false. */
export function noop<T extends object> (real: T): T {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(real)) {
    out[key] = typeof (real as Record<string, unknown>)[key] === 'function' ? () => {} : (real as Record<string, unknown>)[key]
  }
  return out as T
}
