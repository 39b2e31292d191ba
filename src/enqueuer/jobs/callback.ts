// The optional completion callback: the job's JSON POSTed to the URL the
// client gave (on an allowed host), retried a few times with backoff.
// Redirects are not followed. Best effort: the callback is not persisted, so
// an enqueuer that stops mid-retry does not try again; the job stays readable.
import type { Logger } from 'pino'
import { httpCall } from '../../http/client'

const DELAYS_MS = [0, 1000, 2000, 4000]
const TIMEOUT_MS = 5000

export function sendCallback (url: string, body: unknown, logger: Logger, delays: readonly number[] = DELAYS_MS): void {
  const payload = JSON.stringify(body)
  const attempt = async (i: number): Promise<void> => {
    try {
      const res = await httpCall(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload, timeoutMs: TIMEOUT_MS })
      if (res.status < 500 && res.status !== 429) return
      throw new Error(`callback answered ${res.status}`)
    } catch (err) {
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
