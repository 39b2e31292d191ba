// What an idempotency key's entry is and how it is kept. A key is either
// claimed (its first request is in flight) or completed (its answer stored).
// Stores: Redis (shared by every replica and worker, atomic claims) or
// memory (one enqueuer, bounded; a cluster's workers reach the primary's).

/** An answer as the service gave it, replayed as it was. */
export interface StoredAnswer {
  readonly status: number
  /** Flat name/value list, without the headers relayq adds (content-length, x-correlation-id). */
  readonly headers: readonly string[]
  /** base64 */
  readonly body: string
  /** The first request's x-correlation-id, so a replay carries the same one. */
  readonly correlationId: string
  /** Set when the body was above ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES: its size; the body was not kept. */
  readonly tooLarge?: number
}

export type Entry =
  | { readonly state: 'pending', readonly fingerprint: string, readonly claim: string }
  | { readonly state: 'done', readonly fingerprint: string, readonly answer: StoredAnswer }

export interface IdempotencyStore {
  /**
   * Claims `key` for a first request (null: claimed, run it) or says who
   * holds it, atomically: of two concurrent claims exactly one gets null.
   */
  claim: (key: string, entry: Entry & { state: 'pending' }, ttlSeconds: number) => Promise<Entry | null>
  /** Stores the answer; the key is completed for `ttlSeconds`. */
  complete: (key: string, entry: Entry & { state: 'done' }, ttlSeconds: number) => Promise<void>
  /** Drops a claim that is still this one's (`claim` id): nothing ran, a retry may run it. */
  release: (key: string, claim: string) => Promise<void>
  close: () => Promise<void>
}

/** Bytes an entry costs a store's budget, about. */
export function entryBytes (key: string, entry: Entry): number {
  if (entry.state === 'pending') return key.length + 200
  let n = key.length + 200 + entry.answer.body.length
  for (const h of entry.answer.headers) n += h.length
  return n
}
