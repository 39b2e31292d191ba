// The optional completion callback: the job's JSON POSTed to the URL the
// client gave (on an allowed host and port), retried a few times with backoff.
// Redirects are not followed. Best effort: the callback is not persisted, so
// an enqueuer that stops mid-retry does not try again; the job stays readable.
// Every attempt connects only to an address callback-target.ts allows.
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import { httpCall } from '../../http/client'
import { CallbackRefused, portOf, type CallbackTargets } from './callback-target'

const DELAYS_MS = [0, 1000, 2000, 4000]
const TIMEOUT_MS = 5000

export function sendCallback (raw: string, body: unknown, logger: Logger, targets: CallbackTargets, delays: readonly number[] = DELAYS_MS): void {
  const payload = JSON.stringify(body)
  const url = new URL(raw)
  const port = portOf(url)
  const literal = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const attempt = async (i: number): Promise<void> => {
    try {
      // An IP literal is connected to without a lookup: checked here instead.
      const refused = isIP(literal) === 0 ? null : targets.addressRefusal(literal, port)
      if (refused !== null) throw new CallbackRefused(refused)
      const res = await httpCall(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload, timeoutMs: TIMEOUT_MS, lookup: targets.lookupFor(port) })
      if (res.status < 500 && res.status !== 429) return
      throw new Error(`callback answered ${res.status}`)
    } catch (err) {
      if (err instanceof CallbackRefused) {
        logger.warn({ err: err.message, host: url.host }, 'job callback refused: its address is not allowed')
        return
      }
      const next = delays[i + 1]
      if (next === undefined) {
        logger.warn({ err: (err as Error).message, attempts: delays.length }, 'job callback failed for good')
        return
      }
      setTimeout(() => { void attempt(i + 1) }, next).unref()
    }
  }
  setTimeout(() => { void attempt(0) }, delays[0] ?? 0).unref()
}
