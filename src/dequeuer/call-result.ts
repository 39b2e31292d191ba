// What a call to the service is given and what it gives back: the data every
// step of the dequeuer's pipeline shares (prepare builds the request; the
// call strategies, the breaker and the stream sink give the result; outcome,
// reply and settle read it). A leaf: it imports no other dequeuer module, so
// the pipeline's modules depend on it and not on each other in a circle.
import type { ErrorCode } from '../errors'
import type { HeaderTable } from '../http/headers'

export interface ForwardRequest {
  readonly method: string
  /** Path and query on the service's origin. */
  readonly path: string
  readonly headers: HeaderTable
  readonly body: Buffer
  /** Absolute deadline, epoch ms. */
  readonly deadline: number
}

export type ForwardResult =
  | { readonly kind: 'response', readonly status: number, readonly rawHeaders: Buffer[], readonly body: Buffer }
  | { readonly kind: 'error', readonly code: 'RQ_ERR_DOWNSTREAM_UNAVAILABLE' | 'RQ_ERR_DOWNSTREAM_TIMEOUT' | 'RQ_ERR_RESPONSE_TOO_LARGE', readonly message: string }
  /** Already sent to the requester as a stream (stream.ts); `cut` says why it ended early, `code` when the service failed mid-way. */
  | { readonly kind: 'streamed', readonly status: number, readonly cut: StreamCut | null, readonly code?: ErrorCode }

export type StreamCut = 'cancelled' | 'credit_timeout' | 'broker_lost' | 'service_error'
