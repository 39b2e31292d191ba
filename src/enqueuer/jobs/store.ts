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
}

export interface JobStore {
  /** Records a new pending job (expires after the TTL). */
  create: (job: JobRecord, ttlSeconds: number) => Promise<void>
  /** Records the outcome; false when the job is unknown (expired or never created here). */
  complete: (jobId: string, done: Pick<JobRecord, 'status' | 'completed_at' | 'result' | 'error'>, ttlSeconds: number) => Promise<JobRecord | null>
  get: (jobId: string) => Promise<JobRecord | null>
  delete: (jobId: string) => Promise<void>
  close: () => Promise<void>
}

/** The public view of a job: never the token hash or the callback. */
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
