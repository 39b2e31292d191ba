// Calls from a cluster worker to an object that lives in the primary (the
// in-memory job and idempotency stores), over the IPC channel node:cluster
// already gives each worker. A store kept in the primary is one store for all
// workers: what one worker wrote, any other reads.
import type { Worker } from 'node:cluster'

interface Request { readonly relayq: string, readonly id: number, readonly op: string, readonly args: unknown[] }
interface Response { readonly relayq: string, readonly id: number, readonly value?: unknown, readonly error?: string }

const TIMEOUT_MS = 5000

/** Worker side: `call(op, args)` runs `op` on the primary's object and resolves with its result. */
export class PrimaryCaller<Op extends string> {
  private next = 0
  private readonly waiting = new Map<number, (r: Response) => void>()
  private readonly answers: string
  private readonly onMessage = (msg: Response): void => {
    if (msg?.relayq !== this.answers) return
    const done = this.waiting.get(msg.id)
    this.waiting.delete(msg.id)
    done?.(msg)
  }

  /** `channel` names the object: requests carry it, answers carry it with `-result`. */
  constructor (private readonly channel: string) {
    this.answers = `${channel}-result`
    process.on('message', this.onMessage)
  }

  call (op: Op, args: unknown[]): Promise<unknown> {
    const id = ++this.next
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new Error('the cluster primary did not answer'))
      }, TIMEOUT_MS)
      this.waiting.set(id, (r) => {
        clearTimeout(timer)
        if (r.error !== undefined) reject(new Error(r.error))
        else resolve(r.value ?? null)
      })
      process.send?.({ relayq: this.channel, id, op, args } satisfies Request)
    })
  }

  close (): void {
    process.off('message', this.onMessage)
  }
}

/** Primary side: answers one worker's calls of the listed operations from the primary's own object. */
export function servePrimary<Op extends string> (worker: Worker, channel: string, ops: readonly Op[], target: Record<Op, (...args: never[]) => Promise<unknown>>): void {
  const allowed: ReadonlySet<string> = new Set(ops)
  const answers = `${channel}-result`
  worker.on('message', (msg: Request) => {
    if (msg?.relayq !== channel || !allowed.has(msg.op)) return
    const fn = target[msg.op as Op] as (...a: unknown[]) => Promise<unknown>
    fn.apply(target, msg.args).then(
      (value) => { if (worker.isConnected()) worker.send({ relayq: answers, id: msg.id, value: value ?? null } satisfies Response) },
      (err: Error) => { if (worker.isConnected()) worker.send({ relayq: answers, id: msg.id, error: err.message } satisfies Response) },
    )
  })
}
