// Which caller holds the most of the in-memory job store, so eviction takes
// from the heaviest caller and a flood costs its sender, not everyone else.
// A binary max-heap of (usage, caller, version) snapshots: a change pushes a
// new snapshot in O(log n); a snapshot whose caller changed since is stale,
// skipped when it reaches the top, and all stale ones are dropped once they
// outnumber the live ones, so the heap stays within a few times the callers.

interface Snapshot { readonly usage: number, readonly key: string, readonly version: number }

export class Heaviest {
  private heap: Snapshot[] = []
  private readonly live = new Map<string, { usage: number, version: number }>()
  private version = 0

  /** Records a caller's usage; 0 forgets the caller. */
  set (key: string, usage: number): void {
    if (usage <= 0) {
      this.live.delete(key)
      return
    }
    const version = ++this.version
    this.live.set(key, { usage, version })
    this.push({ usage, key, version })
    if (this.heap.length > 2 * this.live.size + 64) this.rebuild()
  }

  /** The caller with the largest usage, or undefined when nobody holds anything. */
  top (): string | undefined {
    for (;;) {
      const first = this.heap[0]
      if (first === undefined) return undefined
      if (this.live.get(first.key)?.version === first.version) return first.key
      this.pop()
    }
  }

  get size (): number {
    return this.live.size
  }

  private rebuild (): void {
    this.heap = []
    for (const [key, { usage, version }] of this.live) this.push({ usage, key, version })
  }

  private push (s: Snapshot): void {
    const h = this.heap
    h.push(s)
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((h[parent] as Snapshot).usage >= s.usage) break
      h[i] = h[parent] as Snapshot
      i = parent
    }
    h[i] = s
  }

  private pop (): void {
    const h = this.heap
    const last = h.pop()
    if (last === undefined || h.length === 0) return
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && (h[r] as Snapshot).usage > (h[l] as Snapshot).usage ? r : l
      if ((h[c] as Snapshot).usage <= last.usage) break
      h[i] = h[c] as Snapshot
      i = c
    }
    h[i] = last
  }
}
