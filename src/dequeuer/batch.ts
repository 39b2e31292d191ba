// Batch mode (ProxyMQ's BATCH_*): messages that passed their checks are
// gathered, up to BATCH_SIZE or for BATCH_WINDOW_MS, and sent to the service
// in one POST; each item of the answer goes back to its own requester. An
// item missing from the answer, or a failed batch call, is a failed attempt
// for each message, under the usual retry and dead-letter rules. A call
// strategy: it gives back one result per message and decides nothing else.
import type { Logger } from 'pino'
import { httpCall } from '../http/client'
import type { BatchConfig } from '../config/types'
import type { DequeuerMetrics } from '../metrics/dequeuer'
import { OPEN, type Breaker, type CallResult } from './breaker'
import type { CallStrategy } from './call'
import { Forwarder } from './forward'
import type { ForwardResult } from './call-result'
import type { Prepared } from './prepare'

interface BatchItem {
  readonly correlation_id: string
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string | string[]>
  readonly body: string
  readonly body_encoding?: 'base64'
}

interface AnswerItem {
  correlation_id?: unknown
  status?: unknown
  status_code?: unknown
  headers?: unknown
  body?: unknown
  content?: unknown
  body_encoding?: unknown
  detail?: unknown
}

interface Waiting {
  readonly p: Prepared
  readonly resolve: (r: CallResult) => void
}

export interface BatcherOptions {
  readonly breaker: Breaker
  readonly metrics: DequeuerMetrics
  /** The single-call pool size (DEQUEUER_POOL_SIZE, by default the prefetch). */
  readonly connections: number
  readonly maxReplyBytes: number
}

export class Batcher implements CallStrategy {
  private pending: Waiting[] = []
  private timer: NodeJS.Timeout | null = null
  private readonly forwarder: Forwarder
  private readonly path: string

  constructor (private readonly opts: BatcherOptions, private readonly cfg: BatchConfig & { url: URL }, readonly size: number) {
    // The single-call pool in batches: no full batch waits for a socket.
    const connections = Math.max(1, Math.ceil(opts.connections / size))
    this.forwarder = new Forwarder({ origin: cfg.url.origin, connections, maxResponseBytes: opts.maxReplyBytes * size, connectTimeoutMs: 5000 })
    this.path = cfg.url.pathname + cfg.url.search
  }

  call (p: Prepared): Promise<CallResult> {
    return new Promise((resolve) => {
      this.pending.push({ p, resolve })
      if (this.pending.length >= this.size) this.flush()
      else this.timer ??= setTimeout(() => this.flush(), this.cfg.windowMs)
    })
  }

  /** A batch of one, sent now (a suspect, which runs alone). */
  async callAlone (p: Prepared): Promise<CallResult> {
    const [result] = await this.send([p])
    return result as CallResult
  }

  async close (): Promise<void> {
    this.flush()
    await this.forwarder.close()
  }

  private flush (): void {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
    if (this.pending.length === 0) return
    const batch = this.pending
    this.pending = []
    void this.send(batch.map((w) => w.p)).then((results) => {
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!)
    })
  }

  /** One result per item, in order; never rejects. */
  private async send (batch: Prepared[]): Promise<CallResult[]> {
    const { metrics, breaker } = this.opts
    metrics.batch(batch.length)
    const ids = batch.map((p, i) => p.req.correlationId ?? `item-${i}`)
    const unique = new Set(ids).size === ids.length
    const keys = unique ? ids : batch.map((_, i) => `item-${i}`)
    const items: BatchItem[] = batch.map((p, i) => ({
      correlation_id: keys[i] as string,
      method: p.req.method,
      path: p.req.path ?? '/',
      headers: p.req.headers,
      ...encode(p.req.body),
    }))
    const started = performance.now()
    const answer = await breaker.run(() => this.forwarder.forward({
      method: 'POST',
      path: this.path,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ requests: items })),
      deadline: Date.now() + this.cfg.timeoutMs,
    }).then(failOnBadStatus)).catch((err: unknown): ForwardResult => ({ kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: `the batch call failed: ${(err as Error).message}` }))
    metrics.downstream((performance.now() - started) / 1000)
    return answer === OPEN ? batch.map(() => OPEN) : split(answer, keys)
  }
}

/** A non-2xx answer to the whole batch is a failed call, not a reply for each item. */
function failOnBadStatus (r: ForwardResult): ForwardResult {
  if (r.kind === 'response' && (r.status < 200 || r.status > 299)) {
    return { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: `the batch call answered ${r.status}` }
  }
  return r
}

/** One result per batch item, matched by correlation_id. */
export function split (answer: ForwardResult, keys: readonly string[]): ForwardResult[] {
  // The batch call never streams (batch.ts calls the service itself).
  if (answer.kind !== 'response') return keys.map(() => answer)
  let parsed: unknown
  try {
    parsed = JSON.parse(answer.body.toString())
  } catch {
    const bad: ForwardResult = { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: 'the batch answer is not JSON' }
    return keys.map(() => bad)
  }
  const list = Array.isArray(parsed) ? parsed : (parsed as { responses?: unknown, results?: unknown }).responses ?? (parsed as { results?: unknown }).results
  const byId = new Map<string, AnswerItem>()
  if (Array.isArray(list)) for (const item of list as AnswerItem[]) if (typeof item?.correlation_id === 'string') byId.set(item.correlation_id, item)
  return keys.map((key) => {
    const item = byId.get(key)
    return item === undefined
      ? { kind: 'error', code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE', message: 'missing from the batch answer' }
      : itemResult(item)
  })
}

function itemResult (item: AnswerItem): ForwardResult {
  const isError = item.status === 'error'
  // A status given but unusable (not an integer, or outside 200-599) reaches the decision as it is, which answers 502.
  const status = item.status_code === undefined || item.status_code === null
    ? isError ? 500 : 200
    : typeof item.status_code === 'number' ? item.status_code
      : typeof item.status_code === 'string' && /^[0-9]{3}$/.test(item.status_code) ? Number(item.status_code) : NaN
  const raw = item.body ?? item.content
  // ProxyMQ answers a failed item with its description as a JSON body.
  const body = typeof raw === 'string'
    ? Buffer.from(raw, item.body_encoding === 'base64' ? 'base64' : 'utf8')
    : isError ? Buffer.from(JSON.stringify(item)) : Buffer.alloc(0)
  const rawHeaders: Buffer[] = []
  if (item.headers !== null && typeof item.headers === 'object') {
    for (const [name, value] of Object.entries(item.headers as Record<string, unknown>)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (typeof v === 'string' || typeof v === 'number') rawHeaders.push(Buffer.from(name, 'latin1'), Buffer.from(String(v), 'latin1'))
      }
    }
  }
  if (isError && raw === undefined) rawHeaders.push(Buffer.from('content-type'), Buffer.from('application/json'))
  return { kind: 'response', status, rawHeaders, body }
}

function encode (body: Buffer): Pick<BatchItem, 'body' | 'body_encoding'> {
  const text = body.toString('utf8')
  return Buffer.from(text, 'utf8').equals(body) ? { body: text } : { body: body.toString('base64'), body_encoding: 'base64' }
}

/** BATCH_SIZE, or (as ProxyMQ) what a GET on the batch URL says: {"batch_size": N}; 1 if it says nothing usable. */
export async function discoverBatchSize (cfg: BatchConfig & { url: URL }, logger: Logger): Promise<number> {
  if (cfg.size !== null) return cfg.size
  try {
    const res = await httpCall(cfg.url, { timeoutMs: 5000 })
    const json = JSON.parse(res.body.toString()) as { batch_size?: unknown }
    const n = Number(json.batch_size)
    if (Number.isInteger(n) && n >= 1 && n <= 10000) return n
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot ask the batch size; using 1')
  }
  return 1
}
