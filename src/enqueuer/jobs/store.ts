// What a job is, how it is kept, and how it is shown (ProxyMQ's shape:
// job_id, status, service, created_at, and when done completed_at with
// result or error). Stores: Redis (shared by every replica, survives a
// restart) or memory (one enqueuer, bounded, shared by its workers).

export type JobStatus = 'pending' | 'completed' | 'failed'

export interface JobResult {
  readonly status_code: number
  readonly headers: Record<string, string | string[]>
  readonly body: string
  /** Present when the body is not valid UTF-8 and travels as base64. */
  readonly body_encoding?: 'base64'
}

export interface JobRecord {
  readonly job_id: string
  readonly service: string
  readonly status: JobStatus
  /** Unix time, seconds (ProxyMQ's float). */
  readonly created_at: number
  readonly completed_at?: number
  readonly result?: JobResult
  readonly error?: string
  /** SHA-256 of the token that guards the job; the token itself is never stored. */
  readonly token_sha256?: string
  readonly callback_url?: string
  /** Who created the job (a hash: the bearer token, else the peer address), for fair eviction. */
  readonly caller?: string
}

export type JobOutcome = Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>

export interface JobStore {
  /** Records a new pending job (expires after the TTL). */
  create: (job: JobRecord, ttlSeconds: number) => Promise<void>
  /** Records the outcome; null when the job is unknown (expired, evicted or never created here) and the store drops it. */
  complete: (jobId: string, done: JobOutcome, ttlSeconds: number) => Promise<JobRecord | null>
  get: (jobId: string) => Promise<JobRecord | null>
  delete: (jobId: string) => Promise<void>
  close: () => Promise<void>
}

/** A job's share of a store's byte budget: what it adds beyond an empty record (the result, or the error text). */
export function outcomeBytes (done: JobOutcome): number {
  let n = done.error === undefined ? 0 : Buffer.byteLength(done.error)
  const result = done.result
  if (result === undefined) return n
  n += Buffer.byteLength(result.body)
  for (const [name, value] of Object.entries(result.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) n += name.length + Buffer.byteLength(v) + 4
  }
  return n
}

/** The outcome kept instead of a result that does not fit: the job failed, saying why. */
export function notKept (done: JobOutcome, code: 'RQ_ERR_RESPONSE_TOO_LARGE' | 'RQ_ERR_JOB_STORE_FULL', why: string): JobOutcome {
  return { status: 'failed', ...(done.completed_at === undefined ? {} : { completed_at: done.completed_at }), error: `${code}: ${why}` }
}

/** The public view of a job: never the token hash, the caller or the callback. */
export function toApi (job: JobRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { job_id: job.job_id, status: job.status, service: job.service, created_at: job.created_at }
  if (job.status === 'pending') return out
  if (job.completed_at !== undefined) out.completed_at = job.completed_at
  if (job.result !== undefined) out.result = job.result
  if (job.error !== undefined) out.error = job.error
  return out
}

/** Text when the bytes are valid UTF-8, base64 (flagged) otherwise. */
export function encodeBody (body: Buffer): Pick<JobResult, 'body' | 'body_encoding'> {
  const text = body.toString('utf8')
  return Buffer.from(text, 'utf8').equals(body) ? { body: text } : { body: body.toString('base64'), body_encoding: 'base64' }
}
