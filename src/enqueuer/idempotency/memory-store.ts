// Idempotency keys in memory, for one enqueuer (its cluster workers reach it
// over IPC). Bounded by a count and a byte budget: past either, the oldest
// entries go first (a retry of an evicted key runs again, as without keys).
import { entryBytes, type Entry, type IdempotencyStore } from './store'

interface Slot { entry: Entry, expiresAt: number, bytes: number }

export class MemoryIdempotencyStore implements IdempotencyStore {
  /** Insertion order is age order: the first entries are the oldest. */
  private readonly slots = new Map<string, Slot>()
  private bytes = 0

  constructor (private readonly maxEntries = 100000, private readonly maxBytes = 256 * 1024 * 1024, private readonly now: () => number = Date.now) {}

  get size (): number {
    return this.slots.size
  }

  async claim (key: string, entry: Entry & { state: 'pending' }, ttlSeconds: number): Promise<Entry | null> {
    const held = this.live(key)
    if (held !== null) return held.entry
    this.put(key, entry, ttlSeconds)
    return null
  }

  async complete (key: string, entry: Entry & { state: 'done' }, ttlSeconds: number): Promise<void> {
    this.put(key, entry, ttlSeconds)
  }

  async release (key: string, claim: string): Promise<void> {
    const held = this.live(key)
    if (held !== null && held.entry.state === 'pending' && held.entry.claim === claim) this.drop(key, held)
  }

  async close (): Promise<void> {}

  private live (key: string): Slot | null {
    const slot = this.slots.get(key)
    if (slot === undefined) return null
    if (slot.expiresAt > this.now()) return slot
    this.drop(key, slot)
    return null
  }

  private put (key: string, entry: Entry, ttlSeconds: number): void {
    const old = this.slots.get(key)
    if (old !== undefined) this.drop(key, old)
    const slot = { entry, expiresAt: this.now() + ttlSeconds * 1000, bytes: entryBytes(key, entry) }
    this.slots.set(key, slot)
    this.bytes += slot.bytes
    for (const [k, s] of this.slots) {
      if (this.slots.size <= this.maxEntries && this.bytes <= this.maxBytes) break
      if (k === key) continue
      this.drop(k, s)
    }
  }

  private drop (key: string, slot: Slot): void {
    this.slots.delete(key)
    this.bytes -= slot.bytes
  }
}
