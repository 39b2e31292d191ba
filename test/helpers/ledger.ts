// The fault tests' accounting (Jepsen's total-queue, adapted). Every request
// carries a unique id; at the end each one is put in exactly one class:
// answered by the service, answered by relayq (its own JSON error), in the
// dead-letter queue, or unaccounted. Unaccounted must be 0.
import { randomUUID } from 'node:crypto'
import { Agent, request } from 'undici'
import type { GetMessage } from 'amqplib'
import type { Behaviour, Received } from './echo'

export interface Outcome {
  readonly id: string
  readonly sentAt: number
  readonly ms: number
  readonly status: number
  /** relayq's x-relayq-error, when relayq made the answer. */
  readonly code: string | undefined
  readonly body: string
  /** Set when the client got no HTTP answer at all. */
  readonly error: string | undefined
}

export interface Accounting {
  readonly sent: number
  readonly answeredByService: number
  readonly relayqErrors: Record<string, number>
  readonly deadLettered: number
  /**
   * No HTTP answer, and the service never executed it nor is it in the DLQ:
   * never accepted (connection refused, or a keep-alive socket closed before
   * the request was read).
   */
  readonly notAccepted: number
  /** A 200 whose body was not the request's own id: a reply delivered to the wrong request. Must be 0. */
  readonly mismatched: number
  readonly unaccounted: number
  readonly unaccountedIds: string[]
  /** Ids the service executed more than once (at-least-once delivery makes this possible). */
  readonly duplicateExecutions: number
}

/** Service side: records how often each request id was executed, and answers with the id. */
export class ServiceLedger {
  readonly executions = new Map<string, number>()

  behaviour (inner?: Behaviour): Behaviour {
    return (req: Received, res) => {
      const id = req.body.toString()
      this.executions.set(id, (this.executions.get(id) ?? 0) + 1)
      if (inner !== undefined) return inner(req, res)
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(id)
    }
  }
}

export class Load {
  readonly outcomes: Outcome[] = []
  private readonly agent: Agent
  private inflight = 0
  private stopped = false

  constructor (private readonly url: () => string, private readonly opts: { timeoutMs?: number, connections?: number } = {}) {
    this.agent = new Agent({ connections: opts.connections ?? 128, keepAliveTimeout: 1000 })
  }

  get pending (): number {
    return this.inflight
  }

  /** Sends `rate` requests per second until `durationMs` passes or stop() is called. */
  async steady (rate: number, durationMs: number): Promise<void> {
    const started = Date.now()
    const tickMs = 20
    const sends: Array<Promise<void>> = []
    // Paced by the clock, not by ticks: on a busy machine a 20 ms timer fires late, and counting ticks sent far fewer.
    while (!this.stopped && Date.now() - started < durationMs) {
      const due = Math.floor((rate * (Date.now() - started)) / 1000)
      while (sends.length < due) sends.push(this.one())
      await new Promise((resolve) => setTimeout(resolve, tickMs))
    }
    await Promise.all(sends)
  }

  /** Sends `total` requests, `concurrency` at a time. */
  async burst (total: number, concurrency: number): Promise<void> {
    let next = 0
    const worker = async (): Promise<void> => {
      while (!this.stopped && next < total) {
        next++
        await this.one()
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
  }

  stop (): void {
    this.stopped = true
  }

  async one (): Promise<void> {
    const id = randomUUID()
    const sentAt = Date.now()
    const t0 = performance.now()
    this.inflight++
    try {
      const res = await request(this.url(), {
        method: 'POST',
        body: id,
        headers: { 'x-test-id': id },
        dispatcher: this.agent,
        headersTimeout: this.opts.timeoutMs ?? 60000,
        bodyTimeout: this.opts.timeoutMs ?? 60000,
      })
      const body = await res.body.text()
      const code = res.headers['x-relayq-error']
      this.outcomes.push({ id, sentAt, ms: performance.now() - t0, status: res.statusCode, code: typeof code === 'string' ? code : undefined, body, error: undefined })
    } catch (err) {
      this.outcomes.push({ id, sentAt, ms: performance.now() - t0, status: 0, code: undefined, body: '', error: (err as NodeJS.ErrnoException).code ?? (err as Error).message })
    } finally {
      this.inflight--
    }
  }

  /** Classifies every request. `deadLetters`: the DLQ's messages (bodies are request ids). */
  account (service: ServiceLedger, deadLetters: GetMessage[] = []): Accounting {
    const dlq = new Set(deadLetters.map((m) => m.content.toString()))
    const relayqErrors: Record<string, number> = {}
    let answered = 0
    let dead = 0
    let notAccepted = 0
    let mismatched = 0
    const unaccounted: string[] = []
    for (const o of this.outcomes) {
      if (o.status === 200 && o.code === undefined && o.body !== o.id) mismatched++
      else if (o.status !== 0 && o.code === undefined) answered++
      else if (o.status !== 0 && o.code !== undefined) relayqErrors[o.code] = (relayqErrors[o.code] ?? 0) + 1
      else if (dlq.has(o.id)) dead++
      else if (o.error !== undefined && !service.executions.has(o.id)) notAccepted++
      // What the client saw goes with the id, so a failing run says why (a reset, a client timeout...).
      else unaccounted.push(`${o.id} (${o.error ?? 'no answer'} after ${Math.round(o.ms)} ms, executed ${service.executions.get(o.id) ?? 0}x)`)
    }
    let duplicates = 0
    for (const n of service.executions.values()) if (n > 1) duplicates++
    return {
      sent: this.outcomes.length,
      answeredByService: answered,
      relayqErrors,
      deadLettered: dead,
      notAccepted,
      mismatched,
      unaccounted: unaccounted.length,
      unaccountedIds: unaccounted.slice(0, 10),
      duplicateExecutions: duplicates,
    }
  }

  async close (): Promise<void> {
    await this.agent.close()
  }
}

export function describeAccounting (name: string, a: Accounting): string {
  const errors = Object.entries(a.relayqErrors).map(([c, n]) => `${c}=${n}`).join(' ') || 'none'
  return `${name}: sent ${a.sent}, answered by service ${a.answeredByService}, relayq errors [${errors}], dead-lettered ${a.deadLettered}, not accepted ${a.notAccepted}, mismatched ${a.mismatched}, unaccounted ${a.unaccounted}, duplicate executions ${a.duplicateExecutions}`
}
