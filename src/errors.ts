// Every answer relayq makes itself has a stable code. The table below is the
// one place that decides each code's HTTP status and its ProxyMQ-style
// `error` phrase; the compiler demands an entry for every code.

const TABLE = {
  // request refused at the edge
  RQ_ERR_BAD_REQUEST: [400, 'Bad Request'],
  RQ_ERR_INVALID_SERVICE: [400, 'Bad Request'],
  RQ_ERR_INVALID_PATH: [400, 'Bad Request'],
  RQ_ERR_INVALID_TIMEOUT: [400, 'Bad Request'],
  RQ_ERR_CALLBACK_NOT_ALLOWED: [400, 'Bad Request'],
  RQ_ERR_IDEMPOTENCY_KEY_INVALID: [400, 'Bad Request'],
  RQ_ERR_UNAUTHORIZED: [401, 'Unauthorized'],
  RQ_ERR_FORBIDDEN: [403, 'Forbidden'],
  RQ_ERR_NOT_FOUND: [404, 'Not Found'],
  RQ_ERR_SERVICE_NOT_ALLOWED: [404, 'Service not found'],
  RQ_ERR_QUEUE_NOT_FOUND: [404, 'Service not found'],
  RQ_ERR_JOB_NOT_FOUND: [404, 'Job not found'],
  RQ_ERR_METHOD_NOT_ALLOWED: [405, 'Method Not Allowed'],
  RQ_ERR_REQUEST_TIMEOUT: [408, 'Request Timeout'],
  RQ_ERR_IDEMPOTENCY_CONFLICT: [409, 'Conflict'],
  RQ_ERR_BODY_TOO_LARGE: [413, 'Payload Too Large'],
  RQ_ERR_URI_TOO_LONG: [414, 'URI Too Long'],
  RQ_ERR_IDEMPOTENCY_MISMATCH: [422, 'Unprocessable Content'],
  RQ_ERR_HEADERS_TOO_LARGE: [431, 'Request Header Fields Too Large'],
  RQ_ERR_HEADERS_UNENCODABLE: [431, 'Request Header Fields Too Large'],
  RQ_ERR_UPGRADE_NOT_SUPPORTED: [501, 'Not Implemented'],
  // the broker or the queue cannot take the request now
  RQ_ERR_NO_CONSUMERS: [503, 'Service unavailable'],
  RQ_ERR_TOO_MANY_WAITING: [503, 'Service unavailable'],
  RQ_ERR_BROKER_UNAVAILABLE: [503, 'Service unavailable'],
  RQ_ERR_BROKER_BLOCKED: [503, 'Service unavailable'],
  RQ_ERR_PUBLISH_TIMEOUT: [503, 'Service unavailable'],
  RQ_ERR_PUBLISH_NACKED: [503, 'Service unavailable'],
  RQ_ERR_OVERLOADED: [503, 'Service unavailable'],
  RQ_ERR_SERVICE_OVERLOADED: [503, 'Service unavailable'],
  RQ_ERR_SEND_BUFFER_FULL: [503, 'Service unavailable'],
  RQ_ERR_DRAINING: [503, 'Service unavailable'],
  RQ_ERR_CIRCUIT_OPEN: [503, 'Service unavailable'],
  RQ_ERR_JOB_STORE_UNAVAILABLE: [503, 'Service unavailable'],
  RQ_ERR_RESULTS_UNAVAILABLE: [503, 'Service unavailable'],
  RQ_ERR_QUEUE_UNAVAILABLE: [503, 'Service unavailable'],
  RQ_ERR_IDEMPOTENCY_STORE_UNAVAILABLE: [503, 'Service unavailable'],
  // accepted, but the answer could not be had
  RQ_ERR_CONNECTION_LOST: [502, 'Bad Gateway'],
  RQ_ERR_MALFORMED_REPLY: [502, 'Bad Gateway'],
  RQ_ERR_REPLY_TIMEOUT: [504, 'Gateway Timeout'],
  RQ_ERR_INTERNAL: [500, 'Internal Server Error'],
  // a job ran but its result was not kept (the job's `error` says so; never an HTTP answer)
  RQ_ERR_JOB_STORE_FULL: [507, 'Insufficient Storage'],
  // made by the dequeuer and carried back in the reply
  RQ_ERR_DOWNSTREAM_UNAVAILABLE: [502, 'Bad Gateway'],
  RQ_ERR_DOWNSTREAM_TIMEOUT: [504, 'Gateway Timeout'],
  RQ_ERR_DOWNSTREAM_STATUS: [502, 'Bad Gateway'],
  RQ_ERR_RESPONSE_TOO_LARGE: [502, 'Bad Gateway'],
  RQ_ERR_REPLY_UNENCODABLE: [502, 'Bad Gateway'],
  RQ_ERR_REPLY_UNROUTABLE: [502, 'Bad Gateway'],
  RQ_ERR_DEADLINE_EXCEEDED: [504, 'Gateway Timeout'],
  RQ_ERR_MALFORMED_MESSAGE: [502, 'Bad Gateway'],
  RQ_ERR_MESSAGE_TOO_LARGE: [502, 'Bad Gateway'],
  RQ_ERR_REDELIVERY_LIMIT: [502, 'Bad Gateway'],
} as const satisfies Record<string, readonly [number, string]>

export type ErrorCode = keyof typeof TABLE

export const ERROR_CODES = Object.keys(TABLE) as ErrorCode[]

export function statusOf (code: ErrorCode): number {
  return TABLE[code][0]
}

export function phraseOf (code: ErrorCode): string {
  return TABLE[code][1]
}

/** A failure that already knows its answer: whoever catches it answers with its code (http/respond's sendFailure). */
export class RelayqError extends Error {
  readonly code: ErrorCode
  readonly detail: string
  constructor (code: ErrorCode, detail: string, options?: { cause?: unknown }) {
    super(`${code}: ${detail}`, options)
    this.name = 'RelayqError'
    this.code = code
    this.detail = detail
  }

  get status (): number {
    return statusOf(this.code)
  }
}

/** The JSON body of an answer relayq makes itself (ProxyMQ's `error` and `detail`, plus `code`). */
export function errorBody (code: ErrorCode, detail: string): Buffer {
  return Buffer.from(JSON.stringify({ error: phraseOf(code), detail, code }))
}
