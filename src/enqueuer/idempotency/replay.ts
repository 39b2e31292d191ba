// Writes a stored answer again, as the service gave it, marked
// `Idempotent-Replayed: true`.
import type { ServerResponse } from 'node:http'
import { sendError } from '../../http/respond'
import type { ResponseSender } from '../../http/send'
import type { StoredAnswer } from './store'

/** Returns the status sent. */
export function replay (res: ServerResponse, sender: ResponseSender, answer: StoredAnswer, isHead: boolean, clientId: string | undefined): number {
  const correlationId = clientId ?? answer.correlationId
  if (answer.tooLarge !== undefined) {
    sendError(res, 'RQ_ERR_RESPONSE_TOO_LARGE', `the request ran once; its answer (${answer.tooLarge} bytes) was larger than ENQUEUER_IDEMPOTENCY_MAX_BODY_BYTES and was not kept`,
      { correlationId })
    return res.statusCode
  }
  const body = Buffer.from(answer.body, 'base64')
  const headers = [...answer.headers, 'x-correlation-id', correlationId, 'idempotent-replayed', 'true']
  const bodiless = answer.status === 204 || answer.status === 304 || answer.status < 200
  // A HEAD's stored body is empty: its length would contradict the service's own Content-Length.
  if (!bodiless && !isHead) headers.push('content-length', String(body.length))
  try {
    // Written as a live answer is: a client that does not read it is bounded like any other.
    sender.send(res, answer.status, headers, isHead || bodiless ? null : body)
  } catch {
    // A header Node will not write (the reply came from whoever can publish to the reply address): refused whole.
    sendError(res, 'RQ_ERR_MALFORMED_REPLY', 'the stored answer cannot be written as an HTTP response', { correlationId })
    return res.statusCode
  }
  return answer.status
}
