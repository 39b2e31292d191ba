// Counters and histograms for the hot path. prom-client re-validates and
// re-hashes the label values on every inc() or observe(), even through a
// labelled child; profiles put that at 3-4% of each process's busy time. These
// keep plain numbers per label tuple and hand prom-client the familiar
// {name, help, type, values} only when it is scraped, so exposition, cluster
// aggregation and the text format stay prom-client's.
import type { Registry } from 'prom-client'

type Labels = Record<string, string>

interface Exported {
  name: string
  help: string
  type: 'counter' | 'histogram'
  values: Array<{ labels: Labels, value: number, metricName?: string }>
  aggregator: 'sum'
}

abstract class FastMetric<Child> {
  protected readonly children = new Map<string, { labels: Labels, child: Child }>()
  readonly aggregator = 'sum' as const

  constructor (registry: Registry, readonly name: string, readonly help: string, protected readonly labelNames: readonly string[]) {
    registry.registerMetric(this as never)
  }

  /** The child for these label values (in labelNames order), made once and kept. */
  labels (...values: string[]): Child {
    const key = values.length === 1 ? values[0] as string : values.join('\u0000')
    let entry = this.children.get(key)
    if (entry === undefined) {
      const labels: Labels = {}
      this.labelNames.forEach((n, i) => { labels[n] = values[i] ?? '' })
      entry = { labels, child: this.make() }
      this.children.set(key, entry)
    }
    return entry.child
  }

  reset (): void {
    this.children.clear()
  }

  protected abstract make (): Child
  abstract get (): Promise<Exported>
}

export class FastCounter extends FastMetric<{ value: number, inc: (n?: number) => void }> {
  readonly type = 'counter'

  protected make (): { value: number, inc: (n?: number) => void } {
    const child = { value: 0, inc (n = 1) { child.value += n } }
    return child
  }

  async get (): Promise<Exported> {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      values: [...this.children.values()].map(({ labels, child }) => ({ labels, value: child.value })),
      aggregator: 'sum',
    }
  }
}

interface HistogramChild {
  readonly counts: number[]
  sum: number
  count: number
  observe: (v: number) => void
}

export class FastHistogram extends FastMetric<HistogramChild> {
  readonly type = 'histogram'

  constructor (registry: Registry, name: string, help: string, labelNames: readonly string[], private readonly bounds: readonly number[]) {
    super(registry, name, help, labelNames)
  }

  protected make (): HistogramChild {
    const bounds = this.bounds
    const child: HistogramChild = {
      counts: new Array<number>(bounds.length + 1).fill(0),
      sum: 0,
      count: 0,
      observe (v: number) {
        let i = 0
        while (i < bounds.length && v > (bounds[i] as number)) i++
        ;(child.counts[i] as number)++
        child.sum += v
        child.count++
      },
    }
    return child
  }

  async get (): Promise<Exported> {
    const values: Exported['values'] = []
    for (const { labels, child } of this.children.values()) {
      let cumulative = 0
      this.bounds.forEach((le, i) => {
        cumulative += child.counts[i] as number
        values.push({ labels: { le: String(le), ...labels }, value: cumulative, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf', ...labels }, value: child.count, metricName: `${this.name}_bucket` })
      values.push({ labels, value: child.sum, metricName: `${this.name}_sum` })
      values.push({ labels, value: child.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' }
  }
}
